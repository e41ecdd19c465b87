"""scaling.config"""
