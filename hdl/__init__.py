"""systole.hdl"""
