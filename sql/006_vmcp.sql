-- VMCP: tenants' VM configurations for the CernVM WebAPI, and each tenant's
-- own domain signing key (the private key encrypted with CP_VMCP_KEY_SECRET;
-- without one, the platform's key signs).

CREATE TABLE vmcp_configs (
  id          CHAR(26)      NOT NULL,
  tenant_id   CHAR(36)      NOT NULL,
  name        VARCHAR(100)  NOT NULL,
  secret      VARCHAR(255)  NOT NULL,
  parameters  MEDIUMTEXT    NOT NULL,
  created_at  DATETIME(6)   NOT NULL,
  updated_at  DATETIME(6)   NOT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY vmcp_configs_name (tenant_id, name),
  KEY vmcp_configs_tenant (tenant_id, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE vmcp_keys (
  tenant_id          CHAR(36)     NOT NULL,
  private_key        TEXT         NOT NULL,
  public_key_base64  TEXT         NOT NULL,
  bits               SMALLINT     NOT NULL,
  fingerprint        VARCHAR(60)  NOT NULL,
  created_at         DATETIME(6)  NOT NULL,
  PRIMARY KEY (tenant_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
