"""Tool servers: the MCP servers whose tools scripts may call (``--tools-config``).

``config`` reads and checks the file, ``caller`` is the interface the executions call tools
through, ``sessions`` holds one MCP client session per tool server (the ``mcp-v8[tools]``
extra), ``catalogue`` renders the tools for a model (declarations, search)."""
