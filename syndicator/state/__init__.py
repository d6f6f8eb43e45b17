"""The store and everything kept in it: stories, editions, deliveries, the list."""
