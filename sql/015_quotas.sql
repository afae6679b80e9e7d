-- Per-tenant quotas and expiry policy, as a platform admin overrides them
-- (PATCH /api/tenants/<id>/quota): a NULL column is the platform default from
-- the config (CP_QUOTA_*, CP_SERVER_MAX_TTL, CP_SERVER_REQUIRE_TTL).
--
-- `version` is the tenant's quota lock: a server create (or anything else
-- that counts against a quota) bumps it in the transaction that counts and
-- writes. On one MariaDB the row lock makes parallel creates of one tenant
-- count one after the other; on Galera, where a lock on one node does not
-- hold another, two creates that both bumped it cannot both commit (the
-- second's write set is refused with 1213, and it runs again and counts anew).
CREATE TABLE tenant_quotas (
  tenant_id            CHAR(36)    NOT NULL,
  max_servers          INT         NULL,
  max_vcpus            INT         NULL,
  max_memory_mb        INT         NULL,
  max_vpcs             INT         NULL,
  max_firewalls        INT         NULL,
  monthly_budget_micro BIGINT      NULL,
  max_ttl_seconds      INT         NULL,
  require_ttl          TINYINT(1)  NULL,
  version              BIGINT      NOT NULL DEFAULT 0,
  updated_at           DATETIME(6) NULL,
  PRIMARY KEY (tenant_id),
  CONSTRAINT tenant_quotas_tenant_fk FOREIGN KEY (tenant_id) REFERENCES tenants (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
