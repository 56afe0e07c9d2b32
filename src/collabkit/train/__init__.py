"""collabkit.train"""
