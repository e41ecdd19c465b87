"""scaling.evaluation"""
