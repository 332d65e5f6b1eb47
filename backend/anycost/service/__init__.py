"""The backend service: a ZeroMQ ROUTER that runs editing sessions for host plugins and scripts.

``server`` holds the socket loop, ``worker`` the render thread, ``sessions`` the per-session
latest-wins state, ``auth`` keys, connection files and CURVE, ``limits`` the abuse limits.
The wire format itself lives in ``anycost_client.protocol``.
"""
