"""An asyncio-native, typed background job runner on Redis, wire-compatible with arq."""
