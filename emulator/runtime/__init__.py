"""Running the emulator: the HTTPS server, TLS material, the request log, the sandbox and agent config writer."""
