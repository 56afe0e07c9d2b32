"""collabkit.models"""
