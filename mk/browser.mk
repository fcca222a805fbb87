# A real browser for the status page's test (tests/observability/test_status_page.py): Debian's
# chromium, driven over the DevTools protocol on a pipe (tests/support/browser.py). Never a
# browser a tool downloads by itself (no Playwright browser install).

## Debian's chromium (bookworm-security); `apt-cache policy chromium` shows what apt offers. Old
## versions leave the archive when a newer security release lands: then set this to the candidate.
CHROMIUM_DEB_VERSION ?= 156.0.8078.129-1~deb12u1

##@ Browser

.PHONY: browser
browser: ## Install Debian's chromium (CHROMIUM_DEB_VERSION) for the /status browser test (apt-get, as root).
	@installed=$$(dpkg-query -W -f='$${Version}' chromium 2>/dev/null || true); \
	if [ -n "$$installed" ] && command -v chromium >/dev/null; then \
	  if [ "$$installed" != "$(CHROMIUM_DEB_VERSION)" ]; then \
	    echo "make browser: chromium $$installed is installed (pinned: $(CHROMIUM_DEB_VERSION)); using it"; \
	  fi; \
	  exit 0; \
	fi; \
	echo "make browser: installing Debian's chromium=$(CHROMIUM_DEB_VERSION) with apt-get" \
	  "(for the /status browser test; mk/browser.mk)"; \
	apt-get install -y -qq --no-install-recommends chromium=$(CHROMIUM_DEB_VERSION) \
	  || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium=$(CHROMIUM_DEB_VERSION); } \
	  || { echo "make browser: could not install chromium=$(CHROMIUM_DEB_VERSION) (as root? still in" \
	            "the archive? see apt-cache policy chromium)" >&2; exit 1; }

test: browser
