"""Request files: validation before anything is paid for, and sharding within provider limits."""
