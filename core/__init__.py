"""What the web, worker and clock processes share. Imports none of them."""
