"""Workspace use cases; each public function owns one transaction."""
