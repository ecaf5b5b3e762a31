"""Wire dialects: each module converts one public API's bodies to and from the internal types."""
