"""Local stand-ins for remote services that speak the services' real wire protocols.

They replace the network, never our own code: the real clients (google-genai, PyGithub) talk HTTP
to them.
"""
