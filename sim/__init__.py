"""systole.sim"""
