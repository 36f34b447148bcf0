"""Model configuration: parsing ``config.pbtxt``, normalization and JSON rendering."""
