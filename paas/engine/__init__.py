"""The container engine: content store, layers, snapshots, images, Dockerfile builds, runtime, network.

Usable on its own; it knows nothing of apps, releases or the platform's services.
"""
