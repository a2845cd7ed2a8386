"""The forwards: listeners, channels and the byte relay between them."""
