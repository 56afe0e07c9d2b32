"""collabkit.data"""
