"""scaling.models"""
