"""STUB (to be replaced): UDP lookup tables."""
class UdpTable:
    pass
