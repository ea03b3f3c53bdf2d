"""Built-in plugins, registered the same way as outside ones."""
