/*
 * url.h: percent-encoding, host validation, endpoint parsing and console
 * URL assembly. Pure C99, no Lua: a fuzzer or a C test links it alone.
 *
 * Every output size is computed before anything is written: callers ask
 * ctv_url_len() for the exact length, provide that many bytes, and
 * ctv_url_write() fills them.
 */
#ifndef CTVNC_URL_H
#define CTVNC_URL_H

#include <stddef.h>

/* What kind of host a string is. */
enum ctv_host {
  CTV_HOST_BAD = 0,
  CTV_HOST_IPV4,
  CTV_HOST_IPV6,
  CTV_HOST_NAME
};

/* encodeURIComponent over bytes: the encoded length of s[0..n). */
size_t ctv_encode_len(const char *s, size_t n);

/* Writes the encoding of s[0..n) to dst (ctv_encode_len bytes, no NUL);
 * returns the byte after the last one written. */
char *ctv_encode(char *dst, const char *s, size_t n);

/* Classifies s[0..n): dotted-quad IPv4, IPv6 (RFC 4291 text forms, no
 * brackets, no zone id) or RFC 1123 host name; CTV_HOST_BAD otherwise. */
enum ctv_host ctv_host_kind(const char *s, size_t n);

/* A parsed CloudTower endpoint. Pointers alias the parsed string. */
typedef struct ctv_endpoint {
  int scheme;          /* CTV_SCHEME_NONE, _HTTP or _HTTPS */
  const char *host;    /* without brackets */
  size_t hostlen;
  int ipv6;            /* host is IPv6: bracket it in URLs */
  unsigned port;       /* 0 when absent */
  const char *prefix;  /* path prefix, no trailing slash; may be empty */
  size_t prefixlen;
} ctv_endpoint;

enum { CTV_SCHEME_NONE = 0, CTV_SCHEME_HTTP, CTV_SCHEME_HTTPS };

/* Parses an endpoint such as "tower:8443", "https://gw/prefix/" or
 * "[fd00::1]". Returns NULL on success, else a static message that never
 * quotes the input (it may hold a password). */
const char *ctv_parse_endpoint(const char *s, size_t n, ctv_endpoint *ep);

/* Parses a decimal port 1-65535 from s[0..n); returns 0 when invalid. */
unsigned ctv_parse_port(const char *s, size_t n);

/* One query parameter: name is a literal, value is percent-encoded. */
typedef struct ctv_param {
  const char *name;
  const char *value;
  size_t valuelen;
} ctv_param;

#define CTV_MAXPARAMS 4

/* A websocket console URL:
 * <scheme>://<host>[:port]<prefix>/websockify/?<n1>=<e(v1)>&<n2>=<e(v2)>... */
typedef struct ctv_url {
  const char *scheme;      /* "ws" or "wss" */
  const char *host;
  size_t hostlen;
  int ipv6;
  unsigned port;           /* 0: none */
  const char *prefix;
  size_t prefixlen;
  ctv_param params[CTV_MAXPARAMS];
  int nparams;
} ctv_url;

/* A cluster address as CloudTower gives it: an IPv6 address may come in
 * brackets, which are stripped from *s and *n. CTV_HOST_BAD when it is not
 * a host (brackets around anything but IPv6 included). */
enum ctv_host ctv_cluster_host(const char **s, size_t *n);

/* Which info field goes into which query parameter, per kind of URL. */
typedef enum ctv_layout {
  CTV_DIRECT = 0,   /* to the cluster: uuid, token=raw_token, host */
  CTV_PROXY,        /* through the tower: token=token, uuid, host */
  CTV_PROXY_RAW     /* through a tower from before the token field (2022):
                       token=raw_token, uuid, host */
} ctv_layout;

typedef struct ctv_field {
  const char *param;       /* query parameter name */
  const char *key;         /* info field it takes its value from */
} ctv_field;

/* The three parameters of each layout in URL order; the last is the host. */
extern const ctv_field ctv_layouts[3][3];

/* The URL through an endpoint: its host, port and prefix, and the scheme
 * it implies (http -> ws, https or none -> wss); no parameters yet. */
void ctv_url_from_endpoint(ctv_url *u, const ctv_endpoint *ep);

size_t ctv_url_len(const ctv_url *u);
/* At least ctv_url_len(u), without scanning the values: a buffer this big
 * can be written at once. */
size_t ctv_url_bound(const ctv_url *u);
/* Writes exactly ctv_url_len(u) bytes (no NUL); returns the end. */
char *ctv_url_write(char *dst, const ctv_url *u);

#endif
