"""The mesh's common library: settings, auth, JSON-RPC, clients, storage."""
