"""The digest by mail: render an edition, deliver it through the ledger, the list."""
