"""scaling.data"""
