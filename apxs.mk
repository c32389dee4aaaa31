# Every flag comes from the tools that know it: apxs for httpd, the APR
# config scripts for APR, pkg-config for hiredis and PCRE2.  Nothing here
# names one distribution's paths.

APXS        ?= $(shell command -v apxs 2>/dev/null || command -v apxs2 2>/dev/null || echo apxs)
APR_CONFIG  ?= $(shell $(APXS) -q APR_CONFIG 2>/dev/null || echo apr-1-config)
APU_CONFIG  ?= $(shell $(APXS) -q APU_CONFIG 2>/dev/null || echo apu-1-config)
PKG_CONFIG  ?= pkg-config

HTTPD_INCLUDEDIR := $(shell $(APXS) -q INCLUDEDIR 2>/dev/null)
HTTPD_CPPFLAGS   := $(shell $(APXS) -q EXTRA_CPPFLAGS 2>/dev/null)
HTTPD_LIBEXECDIR := $(shell $(APXS) -q LIBEXECDIR 2>/dev/null)
HTTPD_SYSCONFDIR := $(shell $(APXS) -q SYSCONFDIR 2>/dev/null)
APR_INCLUDES     := $(shell $(APR_CONFIG) --includes 2>/dev/null)
APR_CPPFLAGS     := $(shell $(APR_CONFIG) --cppflags 2>/dev/null)
APU_INCLUDES     := $(shell $(APU_CONFIG) --includes 2>/dev/null)

HIREDIS_CFLAGS := $(shell $(PKG_CONFIG) --cflags hiredis 2>/dev/null)
HIREDIS_LIBS   := $(shell $(PKG_CONFIG) --libs hiredis 2>/dev/null)
PCRE2_CFLAGS   := $(shell $(PKG_CONFIG) --cflags libpcre2-8 2>/dev/null)
PCRE2_LIBS     := $(shell $(PKG_CONFIG) --libs libpcre2-8 2>/dev/null)
CHECK_CFLAGS   := $(shell $(PKG_CONFIG) --cflags check 2>/dev/null)
CHECK_LIBS     := $(shell $(PKG_CONFIG) --libs check 2>/dev/null)

# httpd and APR headers are included as system headers so that our own
# strict warnings apply to our code only.
# /usr/include itself is left out: it is searched anyway, and naming it
# with -isystem would reorder the compiler's own system directories.
HTTPD_CFLAGS := $(patsubst -I%,-isystem %,$(filter-out -I/usr/include,\
                  -I$(HTTPD_INCLUDEDIR) $(APR_INCLUDES) $(APU_INCLUDES))) \
                $(HTTPD_CPPFLAGS) $(APR_CPPFLAGS)
