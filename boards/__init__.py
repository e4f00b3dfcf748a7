"""systole.boards"""
