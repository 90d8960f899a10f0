# Admin, API docs and static files. Included by the Makefile.
ADMIN_USER ?= admin
ADMIN_PASSWORD ?= admin
ADMIN_EMAIL ?= admin@example.com

.PHONY: createsuperuser-dev install-browser schema collectstatic

createsuperuser-dev: venv ## Dev only: (re)create superuser ADMIN_USER/ADMIN_PASSWORD (admin/admin)
	@DJANGO_ENV=dev ADMIN_USER='$(ADMIN_USER)' ADMIN_PASSWORD='$(ADMIN_PASSWORD)' \
	ADMIN_EMAIL='$(ADMIN_EMAIL)' $(MANAGE) shell -v0 -c "import os; \
	from django.contrib.auth import get_user_model; \
	user, _ = get_user_model().objects.get_or_create(username=os.environ['ADMIN_USER']); \
	user.email = os.environ['ADMIN_EMAIL']; user.is_staff = user.is_superuser = True; \
	user.set_password(os.environ['ADMIN_PASSWORD']); user.save(); \
	print(f'superuser {user.username}: log in at /admin/')"

install-browser: venv ## Install Debian's chromium and Playwright for the browser tests
	scripts/install-browser.sh $(VENV)

schema: venv ## Write the OpenAPI schema to var/openapi.yaml (and check it)
	@mkdir -p var
	$(MANAGE) spectacular --custom-settings messenger.schema.SCHEMA_SETTINGS --validate \
		--fail-on-warn --file var/openapi.yaml
	@echo "var/openapi.yaml"

collectstatic: venv ## Collect static files into var/static (the production deploy step)
	$(MANAGE) collectstatic --noinput -v0
