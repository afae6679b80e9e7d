-- Ownership: what this installation may touch in a shared cloud account.
--
-- Objects made before installation ids carry the old, installation-less tags
-- and names. Rows alive now are marked `legacy_tags`: the monitor takes their
-- droplets over (adds this installation's tags) only when such a row explains
-- them, and a legacy firewall keeps naming the old tags too.
ALTER TABLE servers ADD COLUMN legacy_tags TINYINT NOT NULL DEFAULT 0;
UPDATE servers SET legacy_tags = 1 WHERE status IN ('pending', 'ready', 'deleting');
ALTER TABLE servers ADD KEY servers_legacy (legacy_tags, status);

ALTER TABLE firewalls ADD COLUMN legacy_tags TINYINT NOT NULL DEFAULT 0;
UPDATE firewalls SET legacy_tags = 1 WHERE status <> 'deleted';

-- Cloud objects of this installation that no live row explains, as the monitor
-- last saw them. `held`: never destroyed automatically (its row is unknown
-- here: a restored backup, another database); a person adopts or destroys it.
-- `breaker`: provably dead, but the circuit breaker stopped the run that would
-- have destroyed it; `approved_at` is set by `cloudprovisioner-admin
-- confirm-destroy`, and the next run destroys it.
CREATE TABLE orphans (
  kind           ENUM('droplet', 'vpc', 'firewall') NOT NULL,
  cloud_id       VARCHAR(64)   NOT NULL,
  name           VARCHAR(255)  NOT NULL DEFAULT '',
  row_id         VARCHAR(64)   NULL,
  verdict        ENUM('held', 'breaker') NOT NULL,
  reason         VARCHAR(1000) NOT NULL DEFAULT '',
  first_seen_at  DATETIME(6)   NOT NULL,
  last_seen_at   DATETIME(6)   NOT NULL,
  approved_at    DATETIME(6)   NULL,
  PRIMARY KEY (kind, cloud_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Every VPC range in the cloud account (ours, other installations', hand-made
-- ones), as the monitor last listed them: the default-VPC allocator avoids them.
CREATE TABLE account_vpcs (
  cloud_id     VARCHAR(64)  NOT NULL,
  name         VARCHAR(255) NOT NULL DEFAULT '',
  region       VARCHAR(64)  NOT NULL DEFAULT '',
  ip_range     VARCHAR(64)  NOT NULL,
  range_first  BIGINT       NOT NULL,
  range_last   BIGINT       NOT NULL,
  seen_at      DATETIME(6)  NOT NULL,
  PRIMARY KEY (cloud_id),
  KEY account_vpcs_range (range_first, range_last)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
