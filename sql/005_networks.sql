-- Networks and access: users' SSH keys, tenants' firewalls, VPCs and workspaces.
--
-- Firewalls and VPCs are desired state: the API writes the row (and an
-- operation), tries the cloud at once, and the monitor makes the cloud match
-- the rows on every run. `live` is 1 until a row is deleted and NULL after, so
-- a deleted name can be used again (NULLs never collide in a UNIQUE key).

CREATE TABLE ssh_keys (
  id            CHAR(26)     NOT NULL,
  tenant_id     CHAR(36)     NOT NULL,
  user_id       CHAR(26)     NOT NULL,
  name          VARCHAR(100) NOT NULL,
  public_key    TEXT         NOT NULL,
  algorithm     VARCHAR(64)  NOT NULL,
  bits          SMALLINT     NOT NULL,
  fingerprint   CHAR(47)     NOT NULL,
  sha256        VARCHAR(60)  NOT NULL,
  cloud_key_id  BIGINT       NULL,
  created_at    DATETIME(6)  NOT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY ssh_keys_user_fingerprint (tenant_id, user_id, fingerprint),
  UNIQUE KEY ssh_keys_user_name (tenant_id, user_id, name),
  KEY ssh_keys_tenant (tenant_id, id),
  KEY ssh_keys_fingerprint (fingerprint)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE workspaces (
  id           CHAR(26)      NOT NULL,
  tenant_id    CHAR(36)      NOT NULL,
  name         VARCHAR(64)   NOT NULL,
  description  VARCHAR(1000) NOT NULL DEFAULT '',
  created_at   DATETIME(6)   NOT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY workspaces_name (tenant_id, name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE vpcs (
  id             CHAR(26)      NOT NULL,
  tenant_id      CHAR(36)      NOT NULL,
  name           VARCHAR(64)   NOT NULL,
  description    VARCHAR(255)  NOT NULL DEFAULT '',
  region         VARCHAR(64)   NOT NULL,
  ip_range       VARCHAR(18)   NOT NULL,
  range_first    INT UNSIGNED  NOT NULL,
  range_last     INT UNSIGNED  NOT NULL,
  is_default     TINYINT(1)    NOT NULL DEFAULT 0,
  cloud_id       CHAR(36)      NULL,
  status         ENUM('pending', 'ready', 'error', 'deleting', 'deleted') NOT NULL,
  status_reason  VARCHAR(1000) NOT NULL DEFAULT '',
  live           TINYINT       NULL DEFAULT 1,
  created_at     DATETIME(6)   NOT NULL,
  updated_at     DATETIME(6)   NOT NULL,
  deleted_at     DATETIME(6)   NULL,
  PRIMARY KEY (id),
  UNIQUE KEY vpcs_name (tenant_id, name, live),
  KEY vpcs_tenant (tenant_id, id),
  KEY vpcs_range (range_first, range_last),
  KEY vpcs_status (status, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE firewalls (
  id                CHAR(26)      NOT NULL,
  tenant_id         CHAR(36)      NOT NULL,
  name              VARCHAR(64)   NOT NULL,
  inbound_rules     TEXT          NOT NULL,
  outbound_rules    TEXT          NOT NULL,
  is_default        TINYINT(1)    NOT NULL DEFAULT 0,
  cloud_id          CHAR(36)      NULL,
  revision          INT           NOT NULL DEFAULT 1,
  applied_revision  INT           NOT NULL DEFAULT 0,
  status            ENUM('pending', 'ready', 'error', 'deleting', 'deleted') NOT NULL,
  status_reason     VARCHAR(1000) NOT NULL DEFAULT '',
  live              TINYINT       NULL DEFAULT 1,
  created_at        DATETIME(6)   NOT NULL,
  updated_at        DATETIME(6)   NOT NULL,
  deleted_at        DATETIME(6)   NULL,
  PRIMARY KEY (id),
  UNIQUE KEY firewalls_name (tenant_id, name, live),
  KEY firewalls_tenant (tenant_id, id),
  KEY firewalls_status (status, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Where each server lives and what it was given. Servers made before this
-- migration keep NULLs: they were made in the account's default VPC, with
-- no platform firewall, and show in the default workspace.
ALTER TABLE servers
  ADD COLUMN workspace_id CHAR(26) NULL AFTER tenant_id,
  ADD COLUMN vpc_id CHAR(26) NULL AFTER workspace_id,
  ADD COLUMN firewall_ids TEXT NULL AFTER tags,
  ADD COLUMN ssh_key_ids TEXT NULL AFTER firewall_ids,
  ADD KEY servers_workspace (tenant_id, workspace_id, id),
  ADD KEY servers_vpc (vpc_id, status);
