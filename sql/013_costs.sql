-- When a server's droplet stopped costing money, as the platform knows it:
-- the moment it asked the cloud to destroy the droplet (a user's DELETE, a
-- cancelled create), or the monitor found the droplet gone or gave the
-- server up. `deleted_at` is later (the monitor confirms a DELETE at its next
-- run), so a server is billed from created_at until destroyed_at, or until
-- now while it is NULL (see cloudprovisioner/costs.py).
ALTER TABLE servers ADD COLUMN destroyed_at DATETIME(6) NULL AFTER deleted_at;

-- Rows from before: a deleted server ended when its deletion was confirmed;
-- one being deleted, or that the monitor gave up on, when it was marked so
-- (nothing moves such a row but its deletion's confirmation).
UPDATE servers SET destroyed_at = COALESCE(deleted_at, updated_at)
  WHERE status IN ('deleting', 'deleted', 'error') AND destroyed_at IS NULL;
