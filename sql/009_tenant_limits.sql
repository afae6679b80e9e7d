-- What one tenant may take of what all tenants share (cloudprovisioner/limits.py).
--
-- The cloud account's calls: a token bucket per tenant and kind of call, kept
-- as the time it will be full again (`full_at`); one conditional UPDATE takes
-- a token, so requests in parallel cannot both take the last one.
CREATE TABLE tenant_buckets (
  tenant_id  CHAR(36)     NOT NULL,
  kind       VARCHAR(32)  NOT NULL,
  full_at    DATETIME(6)  NOT NULL,
  PRIMARY KEY (tenant_id, kind)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- VPCs and firewalls a tenant makes itself each hold one of its numbered
-- places, 1 to the cap (CP_TENANT_MAX_VPCS, CP_TENANT_MAX_FIREWALLS). The
-- UNIQUE key is what makes the cap hold when creates race, on one server or
-- across a cluster; a deleted row (`live` NULL) gives its place back, and the
-- defaults the platform makes hold none (NULL).
ALTER TABLE vpcs ADD COLUMN cap_slot SMALLINT NULL,
  ADD UNIQUE KEY vpcs_cap_slot (tenant_id, cap_slot, live);
ALTER TABLE firewalls ADD COLUMN cap_slot SMALLINT NULL,
  ADD UNIQUE KEY firewalls_cap_slot (tenant_id, cap_slot, live);

-- The tenants' own VPCs and firewalls alive now take places in the order
-- they were made; a tenant already over the cap keeps them all and makes no
-- more until it is under.
UPDATE vpcs JOIN (SELECT id, ROW_NUMBER() OVER (PARTITION BY tenant_id ORDER BY id) AS place FROM vpcs
                  WHERE live = 1 AND is_default = 0) numbered ON numbered.id = vpcs.id
  SET vpcs.cap_slot = numbered.place;
UPDATE firewalls JOIN (SELECT id, ROW_NUMBER() OVER (PARTITION BY tenant_id ORDER BY id) AS place FROM firewalls
                       WHERE live = 1 AND is_default = 0) numbered ON numbered.id = firewalls.id
  SET firewalls.cap_slot = numbered.place;

-- SSH keys this installation added to the cloud account itself (its own POST
-- made them). Only these are ever removed from the account: a key with the
-- same fingerprint added by hand or by another installation is used, never
-- removed. Ids are the cloud's and never reused, so a restored backup cannot
-- take a key added since for one of these.
CREATE TABLE account_keys_added (
  cloud_key_id  BIGINT       NOT NULL,
  fingerprint   CHAR(47)     NOT NULL,
  added_at      DATETIME(6)  NOT NULL,
  PRIMARY KEY (cloud_key_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
