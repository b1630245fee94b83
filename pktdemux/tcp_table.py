"""STUB (to be replaced): TCP lookup tables."""
class TcpTable:
    pass
