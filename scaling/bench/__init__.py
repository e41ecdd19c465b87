"""scaling.bench"""
