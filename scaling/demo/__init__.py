"""scaling.demo"""
