-- Leases (cloudprovisioner/leases.py) instead of MySQL named locks, which a
-- MariaDB Galera cluster refuses and which elsewhere hold on one server only:
-- a name, who holds it (a random token per taking), and until when. An
-- expired lease is taken over. `make migrate` makes this table before it
-- takes its own lease, so this file only keeps the schema's history whole.
CREATE TABLE IF NOT EXISTS leases (
  name        VARCHAR(191) NOT NULL,
  holder      CHAR(24)     NOT NULL,
  expires_at  DATETIME(6)  NOT NULL,
  PRIMARY KEY (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
