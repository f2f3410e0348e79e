# ctvnc OpenResty console gateway: console URLs, tickets and noVNC's full
# console page for CloudTower VMs, the websocket relayed by the gateway itself
# (cosockets: view-only enforced in the stream, limits, time caps, kill,
# audit.log, /metrics).
#
# The template `ctvnc gateway start FILE` renders into its prefix directory
# (ctvnc.gateway.render): a setting's name between at-signs is what it
# makes of nginx's text, with "=" after the first at-sign its value in Lua. The rock installs it beside
# ctvnc/gateway/init.lua. Secrets (the CloudTower token, the ticket and JWT
# secrets) reach nginx through its environment, never written here.
#
# What is verified:
#   - CloudTower, for its API (/_ctvnc/) and for its console proxy
#     (@ctvnc_ws_tower: the relay's cosocket, lua_ssl_trusted_certificate),
#     against TOWER_CA (or the system store), the name TOWER_NAME checked. TOWER_TLS=insecure turns that off, with a warning
#     in the error log at every start.
#   - Clusters (@ctvnc_ws_cluster, direct mode over wss: the relay's
#     cosocket, lua_ssl_trusted_certificate) against CLUSTER_CA
#     (or the system store), the name checked against the cluster address
#     CloudTower gave. A self-signed cluster certificate is trusted by adding
#     it to the CLUSTER_CA bundle (cat cluster-*.pem > clusters.pem); it must
#     name that address (nginx checks names with X509_check_host: a DNS name,
#     or the IP written as a DNS name / CN). CLUSTER_TLS=insecure turns the
#     check off, with a warning at every start.
# What is logged:
#   - access.log: address, time, method, path WITHOUT the query, status,
#     size, duration. No headers, no referrer, no query string.
#   - error.log: the gateway's own lines name the VM, the error kind and the
#     target without its query; they never hold a token, a console token, a
#     ticket, an API key or the CloudTower token. Lines nginx writes about a
#     request repeat its request line: the only route whose request line
#     holds a secret (/console/<vm>?ticket=) makes no upstream call and logs
#     its rate limiting at info; in the websocket's named locations the
#     cosockets' own errors are off and the gateway logs every failure
#     itself, one line at error: the VM, its kind (tls, connect, timeout,
#     http) and the target without its query (the console token).
#   - audit.log (AUDIT_LOG): one JSON line per session event (open, close,
#     refused, killed): user, VM, mode, view-only, client address, times,
#     bytes, reason. Never a token, ticket or key. Mode 0640; after a
#     rotation (mv, USR1) the next line goes to a new 0640 file.
#     For the TLS reason of a cluster, ask openssl:
#     openssl s_client -connect <cluster>:443 -CAfile <CLUSTER_CA> -verify_hostname <cluster>

worker_processes @WORKERS@;
# Workers run as WORKER_USER (ctvnc, created when missing; never
# root, and not the nobody other daemons share) when the master is root.
@USER_LINE@
pid nginx.pid;
error_log error.log warn;
daemon on;
# no worker_shutdown_timeout: a reload's old workers keep their open
# consoles until they end; a stop (QUIT) ends them (the relay sees it)

load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;

env CTVNC_TOKEN;          # token or API key, for ctvnc.new{ token = ... }
env CTVNC_ENDPOINT;       # the tower as browsers and ctvnc address it
env CTVNC_TICKET_SECRET;  # HMAC secret of tickets (32+ bytes); unset: random per start, one node
env CTVNC_AUDIT_KEY;      # HMAC key of audit.log's hash chain (32+ bytes); unset: SHA-256
env CTVNC_JWT_SECRET;     # HS256 secret of JWT users (32+ bytes), with JWT=hs256
env STORE;                # shdict | redis://host[:port][/db] | rediss://... (several nodes)
env CTVNC_REDIS_PASSWORD; # the Redis store's password (never in the URL, logs or pages)
env NODE_NAME;            # this node's name in sessions, audit and metrics (unset: host name)
env RECORD_KEY;           # HMAC secret that signs recordings (32+ bytes), with RECORD

# console recordings are written by these threads: a slow disk never
# holds a worker's event loop
thread_pool ctvnc_record threads=2;

# Capacity from one setting, MAX_SESSIONS (run.sh): a session holds two
# connections (the browser's and the target's) and any worker may get all
# of them, so each worker may open 2 x MAX_SESSIONS + 512 (pages, API,
# /health, CloudTower) and as many files, plus 256.
worker_rlimit_nofile @NOFILE@;
events { worker_connections @WORKER_CONNECTIONS@; }

http {
    # No query string (tickets), no Referer, no headers.
    log_format ctvnc '$remote_addr [$time_local] "$request_method $uri $server_protocol" '
                     '$status $body_bytes_sent $request_time';
    access_log access.log ctvnc;
    # temp files of the workers: a directory of theirs
    client_body_temp_path @TMP@/body;
    proxy_temp_path @TMP@/proxy;
    fastcgi_temp_path @TMP@/fastcgi;
    uwsgi_temp_path @TMP@/uwsgi;
    scgi_temp_path @TMP@/scgi;
    include /etc/nginx/mime.types;
    server_tokens off;

    # Bounded connections: a request head must arrive within HEADER_TIMEOUT
    # (a connection that sends nothing is closed, or reclaimed when the
    # worker runs out), and one client address holds at most LIMIT_CONN
    # requests and websockets at a time (429 past it, logged at info: the
    # request line may hold a ticket).
    client_header_timeout @HEADER_TIMEOUT@;
    client_body_timeout @HEADER_TIMEOUT@;
    limit_conn_zone $binary_remote_addr zone=ctvnc_conn:1m;
    limit_conn_status 429;
    limit_conn_log_level info;

    # The client address behind TLS terminators and balancers: taken from
    # X-Forwarded-For only when the connection comes from TRUSTED_PROXIES
    # (realip; $realip_remote_addr keeps the proxy's own address).
    @REAL_IP@

    # Host names this gateway answers (SERVER_NAMES): any other Host is 421
    # (but the error page's own internal redirect).
    map $host $ctvnc_host_ok {
        default 0;
        @SERVER_NAMES_MAP@
    }
    map "$ctvnc_host_ok$uri" $ctvnc_misdirected {
        volatile;                   # read again after the internal redirect
        default 1;
        "~^1" 0;
        "0/_ctvnc_error" 0;
    }

    # DNS for targets named by host name (clusters, CloudTower's proxy):
    # RESOLVER, by default the nameservers of /etc/resolv.conf. In your own
    # configuration: resolver <ip>[:port] ... ipv6=on|off;
    resolver @RESOLVER@ ipv6=@RESOLVER_IPV6@ valid=30s;
    resolver_timeout 5s;

    # TLS 1.2 or 1.3 on every hop (nginx 1.22's defaults stop at 1.2): the
    # relay's cosockets here, the API's proxy_pass in /_ctvnc/.
    lua_ssl_protocols TLSv1.2 TLSv1.3;
    # a rediss:// store's certificate, verified in every location that
    # reaches the store (`ctvnc gateway start` adds STORE_CA to the relays'
    # bundles too); no line without one
    @STORE_TRUST@
    # a cosocket's own error line would carry the request line (a ticket in
    # its query): the gateway logs the failures of the store and the relay
    # itself, without it
    lua_socket_log_errors off;

    # ctvnc: the Lua modules (ctvnc.gateway included) and the C core built
    # for LuaJIT (Lua 5.1's ABI), where `ctvnc gateway start` loads them from.
    lua_package_path "@LUA_DIR@/?.lua;@LUA_DIR@/?/init.lua;;";
    lua_package_cpath "@SO_DIR@/?.so;;";

    # Probe verdicts, shared by all workers; console credentials (only
    # when credential_ttl > 0: they may be single use); used tickets; the
    # per-client budget of batch VM ids.
    lua_shared_dict ctvnc_probe 1m;
    lua_shared_dict ctvnc_creds 1m;
    lua_shared_dict ctvnc_tickets 4m;
    lua_shared_dict ctvnc_rate 1m;
    # Open console sessions (their slots per VM and user, kill flags: 2 KiB
    # a session, sized from MAX_SESSIONS; a full book refuses new sessions,
    # it never evicts open ones), the counters of /metrics, and each
    # worker's count of open sessions (max_sessions), shared by all workers.
    lua_shared_dict ctvnc_sessions @BOOK_SIZE@;
    lua_shared_dict ctvnc_metrics 1m;
    lua_shared_dict ctvnc_node 1m;
    # The head of audit.log's hash chain and its lock (this node's workers).
    lua_shared_dict ctvnc_audit 64k;

    # Per-client rate limiting of the console endpoints, and of /admin/.
    limit_req_zone $binary_remote_addr zone=ctvnc:1m rate=@RATE@;
    limit_req_zone $binary_remote_addr zone=ctvnc_admin:1m rate=@ADMIN_RATE@;
    limit_req_status 429;

    # CloudTower, with a pool of kept-alive connections.
    upstream cloudtower {
        server @TOWER@;
        keepalive @TOWER_KEEPALIVE@;
    }

@REDIRECT@
    init_by_lua_block {
        local gateway = require "ctvnc.gateway"
        gateway.configure({
            -- every setting: docs/gateway.md (declared in ctvnc.gateway.config)
            endpoint = os.getenv("CTVNC_ENDPOINT"),
            token = os.getenv("CTVNC_TOKEN"),
            ticket_secret = os.getenv("CTVNC_TICKET_SECRET"),
            mode = @=MODE@,              -- auto, direct or proxy
            scheme = @=SCHEME@,          -- of the cluster websocket: wss or ws
            port = @=CLUSTER_PORT@,        -- the cluster's websocket port (nil: 443/80)
            proxy_scheme = @=PROXY_SCHEME@,  -- of CloudTower's console proxy ("": the tower's)
            probe_timeout = @=PROBE_TIMEOUT@,  -- seconds the auto mode's probe waits
            probe_ttl = @=PROBE_TTL@,          -- seconds a probe verdict is kept
            -- Who may open which console. Without an authorize hook every
            -- request is denied (403). The shipped one reads lines
            -- "<api key> <vm id>[,<vm id>...]" (or "*") from a file; the key
            -- comes in the X-API-Key header. Browsers get a ticket instead
            -- (POST /console/<vm>/ticket with the key).
            authorize = @AUTHORIZE@,
            credential_ttl = @=CREDENTIAL_TTL@,  -- seconds (at most 10) to cache credentials; 0: never
            tower_timeout = @=TOWER_TIMEOUT@,  -- seconds for a whole console request, retries included
            allowed_origins = @=ALLOWED_ORIGINS@,  -- websocket Origins besides the gateway's own
            frame_ancestors = @=FRAME_ANCESTORS@,  -- who may frame the pages (CSP)
            ticket_ttl = @=TICKET_TTL@,            -- seconds a ticket lives (at most 60)
            ticket_lifetime = @=TICKET_LIFETIME@,  -- seconds a ticket and its renewals are good for
            kill_lock = @=KILL_LOCK@,              -- seconds a kill locks the user out of the VM
            raw_target_urls = @=RAW_TARGET_URLS@,  -- on: /url gives the target's URL (past the relay)
            batch_max = @=BATCH_MAX@,              -- VM ids in one /console/batch
            id_rate = @=ID_RATE@,                  -- batch VM ids per second and client
            user_rate = @=USER_RATE@,              -- console requests per second and user (0: none)
            tower_scheme = @=TOWER_SCHEME@,      -- of the /_ctvnc/ location: https or http
            tower_tls = @=TOWER_TLS@,            -- verify | insecure (warns at start)
            cluster_tls = @=CLUSTER_TLS@,        -- verify | insecure (warns at start)
            tower_name = @=TOWER_NAME@,          -- checked in CloudTower's certificate (console proxy)
            novnc_dir = "/usr/share/novnc",       -- noVNC's vnc.html, served under /novnc/
            max_per_vm = @=MAX_PER_VM@,            -- concurrent consoles of one VM (0: no limit)
            max_per_user = @=MAX_PER_USER@,        -- concurrent consoles of one user (0: no limit)
            max_session = @=MAX_SESSION@,          -- seconds a console may stay open (0: no cap)
            idle_timeout = @=IDLE_TIMEOUT@,        -- seconds without keys/pointer/clipboard (0: none)
            slot_ttl = @=SLOT_TTL@,                -- seconds a crashed worker's slots outlive it
            target_timeout = @=TARGET_TIMEOUT@,    -- seconds for each step of the target's handshake
            store = os.getenv("STORE"),           -- sessions, slots, kill flags, used tickets
            store_ca = @=STORE_CA@,              -- PEM bundle of a rediss:// store
            node_name = @=NODE_NAME@,            -- this node's name (nil: the host name)
            handshake_timeout = @=HANDSHAKE_TIMEOUT@,  -- seconds for the browser's RFB handshake
            exclusive_consoles = @=EXCLUSIVE_CONSOLES@,  -- off: ClientInit is always shared
            trusted_proxies = @=TRUSTED_PROXIES@,  -- whose X-Forwarded-* is believed
            max_sessions = @=MAX_SESSIONS@,        -- sessions this node holds (past it: 503, full)
            -- GET /admin/sessions, POST /admin/sessions/<id>/kill,
            -- /admin/vms/<vm>/kill: nil denies them all (403)
            admin_authorize = @ADMIN_AUTHORIZE@,
            audit_log = @=AUDIT_LOG@,            -- path | error_log | off ("": DIR/audit.log)
            audit_key = os.getenv("CTVNC_AUDIT_KEY"),  -- the audit chain's HMAC key
            metrics_allow = @=METRICS_ALLOW@,    -- /metrics from these (besides loopback)
            record = @=RECORD@,                  -- off | on | grant (docs/gateway.md#recordings)
            record_dir = @=RECORD_DIR@,          -- 0700, owned by the workers
            record_keep_days = @=RECORD_KEEP_DAYS@,  -- days a recording is kept (0: no limit)
            record_max_mb = @=RECORD_MAX_MB@,      -- MB all recordings may take (0: no limit)
            record_required = @=RECORD_REQUIRED@,  -- on: refuse a session that cannot be recorded
            record_keyframe = @=RECORD_KEYFRAME@,  -- seconds between keyframes (0: the first only)
            record_key = os.getenv("RECORD_KEY"), -- signs each recording's final hash
            shot_rate = @=SHOT_RATE@,              -- screenshots a minute per user (0: no limit)
            wall_refresh = @=WALL_REFRESH@,        -- seconds between /wall's refreshes
            wall_still = @=WALL_STILL@,            -- seconds unchanged before /wall marks a screen
            wall_vms = @=WALL_VMS@,              -- VM ids /wall shows without ?vms=
        })
    }

    # recording retention (RECORD_KEEP_DAYS, RECORD_MAX_MB): worker 0, each
    # minute; and a stop (not a reload) ends the open consoles of every
    # generation of workers
    init_worker_by_lua_block { require("ctvnc.gateway").init_worker() }

    server {
@LISTEN@
@TLS@
        merge_slashes off;            # /console//url is an empty VM id, not /console/url
        if ($ctvnc_misdirected) { return 421; }
        limit_conn ctvnc_conn @LIMIT_CONN@;
        # nginx's own error pages (bad requests, unknown paths, a wrong Host,
        # limits) are the gateway's page, with its security headers
        error_page 400 403 404 405 411 413 414 421 429 494 500 502 503 504 /_ctvnc_error;
        location = /_ctvnc_error {
            internal;
            content_by_lua_block { require("ctvnc.gateway").nginx_error() }
        }
        # requests by route and result kind, for /metrics
        log_by_lua_block { require("ctvnc.gateway").log_request() }

        # JSON: {"url": ..., "mode": "direct" | "proxy"}; GET, HEAD (no
        # CloudTower call); X-API-Key.
        location ~ ^/console/([^/]*)/url$ {
            limit_req zone=ctvnc burst=@BURST@ nodelay;
            error_page 429 = @ctvnc_busy_json;
            content_by_lua_block { require("ctvnc.gateway").url() }
        }

        # JSON: {"ticket", "url": "/console/<vm>?ticket=...", "expires_in"};
        # POST with X-API-Key. The link is for one browser, once, within 60 s.
        location ~ ^/console/([^/]*)/ticket$ {
            limit_req zone=ctvnc burst=@BURST@ nodelay;
            error_page 429 = @ctvnc_busy_json;
            content_by_lua_block { require("ctvnc.gateway").ticket() }
        }

        # JSON: {"vm_id", "name", "view_only"} for the console page's status
        # line (one get-vms call to CloudTower); GET, HEAD; the page's cookie
        # ticket (not used up) or X-API-Key.
        location ~ ^/console/([^/]*)/about$ {
            limit_req zone=ctvnc burst=@BURST@ nodelay;
            error_page 429 = @ctvnc_busy_json;
            content_by_lua_block { require("ctvnc.gateway").about() }
        }

        # JSON: POST an array of at most BATCH_MAX VM ids, get client:batch's
        # results. Bodies larger than the buffer are read from nginx's file.
        location = /console/batch {
            limit_req zone=ctvnc burst=@BURST@ nodelay;
            client_max_body_size 256k;
            client_body_buffer_size 8k;   # larger bodies go to a file, which the handler reads
            error_page 429 = @ctvnc_busy_json;
            content_by_lua_block { require("ctvnc.gateway").batch() }
        }

        # The websocket of the console page (GET only; the Origin must be
        # this gateway's or in ALLOWED_ORIGINS; the cookie ticket is used up,
        # or the authorize hook: X-API-Key, JWT). ctvnc picks the target and
        # the access handler hands its plan (VM, user, view-only, target) to
        # the named location of that hop, whose relay connects with that
        # hop's CA.
        location ~ ^/console/([^/]*)/ws$ {
            limit_req zone=ctvnc burst=@BURST@ nodelay;
            set $ctvnc_plan "";           # the access phase's plan, for the relay
            error_page 429 = @ctvnc_busy_json;
            access_by_lua_block { require("ctvnc.gateway").ws() }
        }

        # To a cluster (direct mode): the gateway relays the websocket
        # itself. Only its own handshake reaches the cluster: the browser's
        # headers (cookies, keys, Authorization, Origin, ...) never do, and
        # no extension (permessage-deflate) is negotiated on either side.
        location @ctvnc_ws_cluster {
            error_log error.log error;    # the gateway logs failures itself, without the token
            lua_socket_log_errors off;
            lua_ssl_trusted_certificate @CLUSTER_CA@;
            lua_ssl_verify_depth 4;
            lua_socket_buffer_size @RELAY_BUFFER@;   # bytes per read, per side of a session
            lingering_close off;   # the relay closed the websocket: no 5 s linger at a stop
            content_by_lua_block { require("ctvnc.gateway").relay("cluster") }
        }

        # Through CloudTower's console proxy (proxy mode), verified as the API.
        location @ctvnc_ws_tower {
            error_log error.log error;
            lua_socket_log_errors off;
            lua_ssl_trusted_certificate @TOWER_CA@;
            lua_ssl_verify_depth 4;
            lua_socket_buffer_size @RELAY_BUFFER@;   # bytes per read, per side of a session
            lingering_close off;   # the relay closed the websocket: no 5 s linger at a stop
            content_by_lua_block { require("ctvnc.gateway").relay("tower") }
        }

        # A PNG of the console's screen (?width=N scales it down): the
        # authorize hook decides (view-only grants may), SHOT_RATE per user,
        # CloudTower asked for the target once; the plan goes to the relay's
        # named location of its hop, which takes one frame over a shared RFB
        # connection (an open session is never disturbed). Not a session: one
        # audit line "screenshot".
        location ~ ^/console/([^/]*)/screenshot\.png$ {
            limit_req zone=ctvnc burst=@BURST@ nodelay;
            set $ctvnc_plan "";           # the plan, for the relay's location
            error_page 429 = @ctvnc_busy_json;
            content_by_lua_block { require("ctvnc.gateway").screenshot() }
        }

        # The console wall: thumbnails of the VMs (?vms=a,b or WALL_VMS) the
        # authorize hook allows, refreshed every WALL_REFRESH seconds, each a
        # link to its console page.
        location = /wall {
            limit_req zone=ctvnc burst=@BURST@ nodelay;
            error_page 429 = @ctvnc_busy;
            content_by_lua_block { require("ctvnc.gateway").wall() }
        }

        # Open sessions, kill and locks (admin_authorize; ADMIN_KEYS: keys
        # in X-API-Key). Denied when no hook is configured; ADMIN_RATE per
        # client address, failed authentications logged (never the key).
        location /admin/ {
            limit_req zone=ctvnc_admin burst=20 nodelay;
            error_page 429 = @ctvnc_busy_json;
            content_by_lua_block { require("ctvnc.gateway").admin() }
        }

        # Prometheus metrics (ctvnc_*): loopback and METRICS_ALLOW only.
        location = /metrics {
            content_by_lua_block { require("ctvnc.gateway").metrics() }
        }

        # The console page: noVNC's full UI (toolbar, clipboard, fullscreen,
        # scaling), its websocket to /console/<vm>/ws, a status line; an
        # HTML page with a sentence for every failure. GET, HEAD (no
        # CloudTower call). ?ticket= is moved into a cookie by a redirect.
        location ~ ^/console/([^/]*)$ {
            limit_req zone=ctvnc burst=@BURST@ nodelay;
            limit_req_log_level info;     # the request line may hold a ticket
            error_page 429 = @ctvnc_busy;
            content_by_lua_block { require("ctvnc.gateway").page() }
        }

        location @ctvnc_busy_json {
            content_by_lua_block { require("ctvnc.gateway").busy() }
        }

        location @ctvnc_busy {
            content_by_lua_block { require("ctvnc.gateway").error_page(429, "busy") }
        }

        # Liveness ({"status":"ok"}, no auth, nothing secret); ?ready=1 also
        # asks CloudTower and the store (503 naming the part that is down).
        location = /health {
            limit_req zone=ctvnc burst=@BURST@ nodelay;   # ?ready=1 asks CloudTower: bounded
            error_page 429 = @ctvnc_busy_json;
            content_by_lua_block { require("ctvnc.gateway").health() }
        }

        # Any other path: 404 (the gateway's page), no file looked up.
        location / {
            return 404;
        }

        # noVNC itself, from Debian's novnc package.
        location /novnc/ {
            limit_except GET { deny all; }
            alias /usr/share/novnc/;
            add_header X-Content-Type-Options nosniff always;
            add_header Referrer-Policy no-referrer always;
            add_header Content-Security-Policy "frame-ancestors @FRAME_ANCESTORS@" always;
@HSTS@
        }

        # ctvnc's requests to CloudTower (ctvnc.resty): internal only. The
        # headers come from the client through ngx.ctx; the browser's own
        # headers (cookies, keys) are never passed on.
        location /_ctvnc/ {
            internal;
            set_by_lua_block $ctvnc_authorization {
                return ngx.ctx.ctvnc_headers and ngx.ctx.ctvnc_headers.Authorization or ""
            }
            set_by_lua_block $ctvnc_language {
                return ngx.ctx.ctvnc_headers and ngx.ctx.ctvnc_headers["content-language"] or ""
            }
            proxy_pass_request_headers off;
            proxy_set_header Authorization $ctvnc_authorization;
            proxy_set_header Content-Type application/json;
            proxy_set_header accept application/json;
            proxy_set_header content-language $ctvnc_language;
            proxy_set_header Connection "";
            proxy_http_version 1.1;
            proxy_pass @TOWER_SCHEME@://cloudtower@TOWER_PREFIX@;   # CloudTower's path prefix, if any
            proxy_buffering off;      # stream the answer through the body filter below
            proxy_ssl_verify @TOWER_VERIFY@;
            proxy_ssl_trusted_certificate @TOWER_CA@;
            proxy_ssl_verify_depth 4;
            proxy_ssl_protocols TLSv1.2 TLSv1.3;
            proxy_ssl_name @TOWER_NAME@;
            proxy_ssl_server_name on;
            proxy_connect_timeout 5s;
            proxy_read_timeout @TOWER_TIMEOUT@;
            proxy_send_timeout @TOWER_TIMEOUT@;
            # ctvnc.resty: whether CloudTower answered at all (and whether TLS
            # failed), and the body counted as it streams in, dropped past
            # the transport's max_body.
            header_filter_by_lua_block { require("ctvnc.resty").header_filter() }
            body_filter_by_lua_block { require("ctvnc.resty").body_filter() }
        }
    }
}
