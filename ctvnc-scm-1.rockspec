rockspec_format = "3.0"
package = "ctvnc"
version = "scm-1"
source = {
  url = "git+https://github.com/ctvnc/ctvnc.git",
}
description = {
  summary = "noVNC console URLs for SmartX CloudTower virtual machines",
  detailed = [[
    Fetches VNC credentials from CloudTower's GraphQL API with libcurl and
    builds the websocket URLs that noVNC opens, direct to the cluster or
    through CloudTower's proxy; batch generation and proxy fallback included.
  ]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.1",
  "lua-cjson",
}
external_dependencies = {
  -- Debian keeps curl/curl.h in a multiarch folder LuaRocks does not
  -- search; the compiler finds it on its own, the library is what we check.
  CURL = { library = "curl" },
  -- zlib: RFB's ZRLE encoding and PNG screenshots
  ZLIB = { library = "z" },
}
-- No -Werror or -fvisibility flags reach a builtin build: csrc/compat.h and
-- the internal headers make an implicit declaration an error and hide every
-- symbol but luaopen_ctvnc_core themselves.
build = {
  type = "builtin",
  modules = {
    ["ctvnc.core"] = {
      -- every csrc/*.c (the Makefile takes them all; keep this list equal)
      sources = {
        "csrc/lctvnc.c",
        "csrc/lurl.c",
        "csrc/lsession.c",
        "csrc/lsys.c",
        "csrc/lframes.c",
        "csrc/lsignal.c",
        "csrc/lresp.c",
        "csrc/url.c",
        "csrc/http.c",
        "csrc/probe.c",
        "csrc/frames.c",
        "csrc/resp.c",
        "csrc/grow.c",
        "csrc/lshot.c",
        "csrc/shot.c",
        "csrc/rfb.c",
        "csrc/png.c",
        "csrc/wsc.c",
        "csrc/lrecording.c", "csrc/sha256.c", "csrc/recording.c",
      },
      libraries = { "curl", "z" },
      incdirs = { "$(CURL_INCDIR)", "$(ZLIB_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)", "$(ZLIB_LIBDIR)" },
    },
    ["ctvnc"] = "lua/ctvnc/init.lua",
    ["ctvnc.client"] = "lua/ctvnc/client.lua",
    ["ctvnc.shot"] = "lua/ctvnc/shot.lua",
    ["ctvnc.api"] = "lua/ctvnc/api.lua",
    ["ctvnc.batch"] = "lua/ctvnc/batch.lua",
    ["ctvnc.args"] = "lua/ctvnc/args.lua",
    ["ctvnc.console"] = "lua/ctvnc/console.lua",
    ["ctvnc.cli"] = "lua/ctvnc/cli/init.lua",
    ["ctvnc.cli.flags"] = "lua/ctvnc/cli/flags.lua",
    ["ctvnc.cli.output"] = "lua/ctvnc/cli/output.lua",
    ["ctvnc.cli.connect"] = "lua/ctvnc/cli/connect.lua",
    ["ctvnc.cli.console"] = "lua/ctvnc/cli/console.lua",
    -- the commands: one file each (ctvnc.cli lists them)
    ["ctvnc.cli.url"] = "lua/ctvnc/cli/url.lua",
    ["ctvnc.cli.batch"] = "lua/ctvnc/cli/batch.lua",
    ["ctvnc.cli.vms"] = "lua/ctvnc/cli/vms.lua",
    ["ctvnc.cli.login"] = "lua/ctvnc/cli/login.lua",
    ["ctvnc.cli.shot"] = "lua/ctvnc/cli/shot.lua",
    ["ctvnc.cli.check"] = "lua/ctvnc/cli/check.lua",
    ["ctvnc.cli.wall"] = "lua/ctvnc/cli/wall.lua",
    ["ctvnc.cli.recording"] = "lua/ctvnc/cli/recording.lua",
    ["ctvnc.cli.audit"] = "lua/ctvnc/cli/audit.lua",
    ["ctvnc.cli.keyfile"] = "lua/ctvnc/cli/keyfile.lua",
    ["ctvnc.recording"] = "lua/ctvnc/recording.lua",
    ["ctvnc.auditchain"] = "lua/ctvnc/auditchain.lua",
    ["ctvnc.resty"] = "lua/ctvnc/resty.lua",
    ["ctvnc.viewonly"] = "lua/ctvnc/viewonly.lua",
    ["ctvnc.jwt"] = "lua/ctvnc/jwt.lua",
    ["ctvnc.b64url"] = "lua/ctvnc/b64url.lua",
    ["ctvnc.logsafe"] = "lua/ctvnc/logsafe.lua",
    ["ctvnc.ticket"] = "lua/ctvnc/ticket.lua",
    ["ctvnc.gateway"] = "lua/ctvnc/gateway/init.lua",
    ["ctvnc.gateway.config"] = "lua/ctvnc/gateway/config.lua",
    ["ctvnc.gateway.state"] = "lua/ctvnc/gateway/state.lua",
    ["ctvnc.gateway.log"] = "lua/ctvnc/gateway/log.lua",
    ["ctvnc.gateway.respond"] = "lua/ctvnc/gateway/respond.lua",
    ["ctvnc.gateway.auth"] = "lua/ctvnc/gateway/auth.lua",
    ["ctvnc.gateway.cookie"] = "lua/ctvnc/gateway/cookie.lua",
    ["ctvnc.gateway.tower"] = "lua/ctvnc/gateway/tower.lua",
    ["ctvnc.gateway.page"] = "lua/ctvnc/gateway/page.lua",
    ["ctvnc.gateway.routes"] = "lua/ctvnc/gateway/routes.lua",
    ["ctvnc.gateway.wsclient"] = "lua/ctvnc/gateway/wsclient.lua",
    ["ctvnc.gateway.relay"] = "lua/ctvnc/gateway/relay.lua",
    ["ctvnc.gateway.recorder"] = "lua/ctvnc/gateway/recorder.lua",
    ["ctvnc.gateway.recfile"] = "lua/ctvnc/gateway/recfile.lua",
    ["ctvnc.gateway.recadmin"] = "lua/ctvnc/gateway/recadmin.lua",
    ["ctvnc.gateway.keyframe"] = "lua/ctvnc/gateway/keyframe.lua",
    ["ctvnc.gateway.watch"] = "lua/ctvnc/gateway/watch.lua",
    ["ctvnc.gateway.book"] = "lua/ctvnc/gateway/book.lua",
    ["ctvnc.gateway.audit"] = "lua/ctvnc/gateway/audit.lua",
    ["ctvnc.gateway.auditfile"] = "lua/ctvnc/gateway/auditfile.lua",
    ["ctvnc.gateway.metrics"] = "lua/ctvnc/gateway/metrics.lua",
    ["ctvnc.gateway.admin"] = "lua/ctvnc/gateway/admin.lua",
    ["ctvnc.gateway.health"] = "lua/ctvnc/gateway/health.lua",
    ["ctvnc.gateway.service"] = "lua/ctvnc/gateway/service.lua",
    ["ctvnc.gateway.render"] = "lua/ctvnc/gateway/render.lua",
    ["ctvnc.cli.gateway"] = "lua/ctvnc/cli/gateway.lua",
    ["ctvnc.gateway.shot"] = "lua/ctvnc/gateway/shot.lua",
    ["ctvnc.gateway.wall"] = "lua/ctvnc/gateway/wall.lua",
    ["ctvnc.gateway.store.shdict"] = "lua/ctvnc/gateway/store/shdict.lua",
    ["ctvnc.gateway.store.redis"] = "lua/ctvnc/gateway/store/redis.lua",
    ["ctvnc.redis"] = "lua/ctvnc/redis.lua",
  },
  install = {
    bin = { ctvnc = "bin/ctvnc" },
    -- the page templates, beside ctvnc/gateway/respond.lua (read from there),
    -- nginx.conf's template (ctvnc gateway start renders it) and the
    -- commented default settings file, beside ctvnc/gateway/init.lua
    lua = {
      ["ctvnc.gateway.console"] = "lua/ctvnc/gateway/console.html",
      ["ctvnc.gateway.error"] = "lua/ctvnc/gateway/error.html",
      ["ctvnc.gateway.nginx"] = "lua/ctvnc/gateway/nginx.tpl",
      ["ctvnc.gateway.gateway"] = "lua/ctvnc/gateway/gateway.conf",
      ["ctvnc.gateway.wall_page"] = "lua/ctvnc/gateway/wall_page.html",
    },
  },
}
test = {
  type = "busted",
}
