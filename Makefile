# CloudProvisioner. The two commands a new machine needs:
#   make demo   run the whole service locally (sandbox cloud, MariaDB, Apache on :8080, monitor)
#   make test   run every test (those that need no service first; `make test-unit` runs only them)
# Both install what they need first (Debian packages, then the venv in .venv).

PREFIX ?= /opt/cloudprovisioner
CONFDIR ?= /etc/cloudprovisioner
APACHE_CONFDIR ?= /etc/apache2/conf-available
CRONDIR ?= /etc/cron.d
WEB_GROUP ?= www-data
# The deployed venv must come from the system Python: www-data cannot run one under /root.
PYTHON ?= /usr/bin/python3
DEMO_DIR ?= /var/tmp/cloudprovisioner-demo
DEMO_PORT ?= 8080
DEMO_CLOUD_PORT ?= 8090
DEMO_SMTP_PORT ?= 8025

VENV = .venv
SHIMS = cgi-bin/api monitor/monitor_new_node monitor/send_mail bin/cloudprovisioner-admin
FILL = sed -e 's|/opt/cloudprovisioner|$(PREFIX)|g' -e 's|/etc/cloudprovisioner|$(CONFDIR)|g'

.PHONY: deps venv test test-unit lint demo demo-stop bench mutation cloud-check install migrate admin

deps:
	@sh tools/install-deps

$(VENV)/.installed: requirements.txt requirements-test.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-test.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

venv: deps $(VENV)/.installed

# In random order (pytest-randomly): a test that only passes after another one fails sooner or later.
# The order is drawn from the commit (its hash is the seed), so a commit's CI run and your run of it test
# the same order, and each new commit tries another. The header says `Using --randomly-seed=N`;
# `make test SEED=N` runs any order, `SEED=random` a new one each time, and `.venv/bin/pytest -p no:randomly`
# the files in order. The unit tier still runs first (tests/conftest.py).
SEED ?= $(shell git rev-parse --short=7 HEAD 2>/dev/null | sed -n 's/^\([0-9a-f]*\)$$/0x\1/p' | xargs -r printf '%d')
RANDOM_ORDER = -p randomly $(if $(filter-out random,$(SEED)),--randomly-seed=$(SEED))

test: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest $(RANDOM_ORDER)

# The tests that need no service (no MariaDB, cloud API, SMTP or Apache): seconds, not minutes.
test-unit: venv
	$(VENV)/bin/pytest -m unit $(RANDOM_ORDER)

lint: venv
	$(VENV)/bin/ruff check .

demo: venv
	$(VENV)/bin/python tools/demo.py start --dir $(DEMO_DIR) --port $(DEMO_PORT) --cloud-port $(DEMO_CLOUD_PORT) --smtp-port $(DEMO_SMTP_PORT)

demo-stop: venv
	$(VENV)/bin/python tools/demo.py stop --dir $(DEMO_DIR) --port $(DEMO_PORT)

bench: venv
	$(VENV)/bin/python tools/bench.py

# Read only: DigitalOcean's answers to what the service reads (account, catalog, its droplets), taken with
# CP_DO_TOKEN (from the environment, or CONFIG=/etc/cloudprovisioner/cloudprovisioner.env), against the
# local cloud API's. Without a token it says so and exits 0.
cloud-check: venv
	$(VENV)/bin/python tools/cloud_check.py $(if $(CONFIG),--config $(CONFIG))

# Mutation testing of the rules that decide who may do what and what reaches the cloud, against the
# unit tier: minutes, not part of `make test`. Its own venv: the tests must import mutmut's mutated
# copy of the package, which the editable install in .venv would hide.
MUTATION_VENV = .venv-mutation
$(MUTATION_VENV)/.installed: requirements.txt requirements-test.txt requirements-mutation.txt
	test -x $(MUTATION_VENV)/bin/python || $(PYTHON) -m venv $(MUTATION_VENV)
	$(MUTATION_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-mutation.txt
	touch $@

mutation: deps $(MUTATION_VENV)/.installed
	rm -rf mutants
	$(MUTATION_VENV)/bin/python tools/mutation.py

# Install for real (or into a scratch PREFIX): venv, package, shims, SQL, Apache and cron files,
# and the example config. A live config is never overwritten.
install:
	install -d -m 755 $(PREFIX) $(PREFIX)/cgi-bin $(PREFIX)/monitor $(PREFIX)/bin $(PREFIX)/sql \
		$(APACHE_CONFDIR) $(CRONDIR) $(CONFDIR)
	test -x $(PREFIX)/venv/bin/python3 || $(PYTHON) -m venv $(PREFIX)/venv
	$(PREFIX)/venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	rm -rf build
	$(PREFIX)/venv/bin/pip install --quiet --disable-pip-version-check --no-deps \
		--force-reinstall .
	rm -rf build cloudprovisioner.egg-info
	rev=$$(git rev-parse --short HEAD 2>/dev/null || true); [ -z "$$rev" ] || $(PREFIX)/venv/bin/python3 -I -c \
		'import pathlib, sys, cloudprovisioner; pathlib.Path(cloudprovisioner.__file__).with_name("REVISION").write_text(sys.argv[1])' "$$rev"
	for shim in $(SHIMS); do \
		sed -e '1s|^#!/usr/bin/python3|#!$(PREFIX)/venv/bin/python3|' $$shim > $(PREFIX)/$$shim.tmp && \
		chmod 755 $(PREFIX)/$$shim.tmp && mv $(PREFIX)/$$shim.tmp $(PREFIX)/$$shim; \
	done
	install -m 644 sql/*.sql $(PREFIX)/sql/
	$(FILL) apache/cloudprovisioner.conf > $(APACHE_CONFDIR)/cloudprovisioner.conf
	$(FILL) etc/cron.d/cloudprovisioner > $(CRONDIR)/cloudprovisioner
	chmod 644 $(APACHE_CONFDIR)/cloudprovisioner.conf $(CRONDIR)/cloudprovisioner
	install -m 644 etc/cloudprovisioner.env.example $(CONFDIR)/cloudprovisioner.env.example
	test -e $(CONFDIR)/cloudprovisioner.env || { \
		install -m 640 etc/cloudprovisioner.env.example $(CONFDIR)/cloudprovisioner.env && \
		{ chgrp $(WEB_GROUP) $(CONFDIR)/cloudprovisioner.env 2>/dev/null || true; }; }
	$(PREFIX)/bin/cloudprovisioner-admin --config $(CONFDIR)/cloudprovisioner.env ensure-secret
	chmod -R a+rX $(PREFIX)/venv $(PREFIX)/cgi-bin $(PREFIX)/monitor $(PREFIX)/bin $(PREFIX)/sql
	@echo "installed into $(PREFIX); edit $(CONFDIR)/cloudprovisioner.env, then: make migrate admin"

migrate:
	$(PREFIX)/bin/cloudprovisioner-admin --config $(CONFDIR)/cloudprovisioner.env migrate

# The first platform admin: make admin EMAIL=you@example.com NAME="Your Name" [PASSWORD_FILE=path]
# (without PASSWORD_FILE the password is asked for twice).
admin:
	$(PREFIX)/bin/cloudprovisioner-admin --config $(CONFDIR)/cloudprovisioner.env create-admin \
		--email "$(EMAIL)" --name "$(NAME)" $(if $(TENANT),--tenant "$(TENANT)") \
		$(if $(PASSWORD_FILE),--password-file "$(PASSWORD_FILE)")
