"""Mesh loading and cleaning, geodesics, orientation, device choice, progress and file storage."""
