-- The cloud's droplet sizes as /v2/sizes lists them: what a size gives (for
-- quotas on vCPUs and memory) and what it costs (for costs and budgets). The
-- monitor refreshes the list (one call per run at most, when it is older than
-- CP_SIZES_MAX_AGE), so no request pays a cloud call for it. Prices are whole
-- micro-dollars (DigitalOcean gives hourly prices to 5 decimal places), so
-- that sums of them are exact and need no decimal arithmetic.
CREATE TABLE cloud_sizes (
  slug                VARCHAR(64)  NOT NULL,
  vcpus               INT          NOT NULL,
  memory_mb           INT          NOT NULL,
  disk_gb             INT          NOT NULL,
  price_hourly_micro  BIGINT       NOT NULL,
  price_monthly_micro BIGINT       NOT NULL,
  available           TINYINT(1)   NOT NULL,
  fetched_at          DATETIME(6)  NOT NULL,
  PRIMARY KEY (slug)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
