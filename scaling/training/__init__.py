"""scaling.training"""
