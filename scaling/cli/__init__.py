"""scaling.cli"""
