"""
    WSCore.WebSockets

A drop-in for `HTTP.WebSockets` (HTTP.jl 2.x; 1.x habits accepted): `open`,
`listen`, `listen!`, `serve!`, `send`, `receive`, `ping`, `pong`, `close`,
iteration, `WebSocketError`, `CloseFrameBody`, `server_addr`, `forceclose`,
plus WebSockets.jl's `readguarded` and `writeguarded`. Replace
`using HTTP.WebSockets` with `using WSCore.WebSockets`.

No call parks an OS thread while it waits for the network: `receive` and the
server's accept wait in Julia's scheduler on the descriptor the C library
makes readable (`FileWatching.poll_fd`), then take the data with a
non-blocking call; sends use a zero send timeout and yield while the queue is
full; the two calls that must block in C (`ws_open`, `ws_close`) run on
libuv's thread pool through `@threadcall`.
"""
module WebSockets

using FileWatching: poll_fd
import Sockets: send   # extend Sockets.send as HTTP.jl 1.x does: `using Sockets` beside us does not clash
using ..LibWSCore: wsym, cstr, errname, strerror, FP_WS_OPEN, FP_WS_CLOSE, WS_OK, WS_EINVAL, WS_EAGAIN,
                   WS_ECLOSED, WS_ECANCELED, WS_ESTATE, WS_TEXT, WS_BINARY, WS_STATE_OPEN, WS_STATE_CLOSED

export WebSocket, send, receive, ping, pong, send_batch, readguarded, writeguarded

# ---------------------------------------------------------------- errors

"""
    CloseFrameBody(code, reason="")

A close code and reason. Answers `code`/`reason` and also `status`/`message`
(HTTP.jl 1.x's field names).
"""
struct CloseFrameBody
    code::Int
    reason::String
end
CloseFrameBody(code::Integer, reason::AbstractString="") = CloseFrameBody(Int(code), String(reason))

function Base.getproperty(b::CloseFrameBody, s::Symbol)
    s === :status && return getfield(b, :code)
    s === :message && return getfield(b, :reason)
    return getfield(b, s)
end
Base.propertynames(::CloseFrameBody) = (:code, :reason, :status, :message)

"""
    WebSocketError(CloseFrameBody(code, reason))

Thrown by `receive` once the connection is closed, normal closes included
(as HTTP.jl does; `isok(e)` tells 1000/1001/1005 apart). A dropped connection
is 1006. Also thrown by `send`, `ping` and `pong` on a closed (or closing)
connection.
"""
struct WebSocketError <: Exception
    message::Union{String,CloseFrameBody}
end
function Base.showerror(io::IO, e::WebSocketError)
    m = e.message
    m isa CloseFrameBody ? print(io, "WebSocketError: ", m.code, isempty(m.reason) ? "" : " ($(m.reason))") :
                           print(io, "WebSocketError: ", m)
end

"""
    isok(e) -> Bool

Whether `e` is a `WebSocketError` for a normal close: 1000 (normal), 1001
(going away) or 1005 (no status given).
"""
isok(e) = e isa WebSocketError && e.message isa CloseFrameBody && e.message.code in (1000, 1001, 1005)

"""
    WSCoreError

A failure of the C library other than a close: `name` is the `WS_E*` name
(e.g. "WS_ETIMEDOUT"), `msg` the `ws_strerror` text plus the library's detail,
`status` the HTTP status of a refused handshake (0 otherwise).
"""
struct WSCoreError <: Exception
    code::Int
    name::String
    msg::String
    status::Int
end
Base.showerror(io::IO, e::WSCoreError) =
    print(io, "WSCoreError(", e.name, "): ", e.msg, e.status > 0 ? " (HTTP $(e.status))" : "")

function lib_error(rc::Integer, p::Ptr{Cvoid}=C_NULL; status::Integer=0)
    text = strerror(rc)
    detail = p == C_NULL ? "" : cstr(ccall(wsym(:ws_error_detail), Ptr{UInt8}, (Ptr{Cvoid},), p))
    return WSCoreError(Int(rc), errname(rc), isempty(detail) ? text : "$text: $detail", Int(status))
end

# ---------------------------------------------------------------- requests

"""
    Request

The upgrade request a connection came with (`ws.request`, or HTTP.jl 2.x's
`ws.handshake_request`): `method`, `target` ("/chat?room=1"), `path`, `query`
and `headers` (a `Vector{Pair{String,String}}`). Read a header with
`WebSockets.header(req, name)` (case-insensitive).
"""
struct Request
    method::String
    target::String
    path::String
    query::String
    headers::Vector{Pair{String,String}}
end

"""The handshake response a client connection got (`ws.response`, `ws.handshake_response`): `status`, `headers`."""
struct Response
    status::Int
    headers::Vector{Pair{String,String}}
end

const Headers = AbstractVector{<:Pair}

"""
    header(msg, name, default="")

A header of a `Request`, a `Response` or a vector of `name => value` pairs, by
case-insensitive name (several with one name come joined with ", "), like
`HTTP.header`; `default` when absent.
"""
header(msg::Union{Request,Response}, name::AbstractString, default="") = header(msg.headers, name, default)
function header(headers::Headers, name::AbstractString, default="")
    vals = [string(v) for (k, v) in headers if lowercase(string(k)) == lowercase(name)]
    return isempty(vals) ? default : join(vals, ", ")
end

"""    hasheader(msg, name) / hasheader(msg, name, token) — like `HTTP.hasheader`."""
hasheader(msg::Union{Request,Response}, name::AbstractString) =
    any(p -> lowercase(p.first) == lowercase(name), msg.headers)
hasheader(msg::Union{Request,Response}, name::AbstractString, token::AbstractString) =
    lowercase(token) in header_tokens(msg, name)

header_tokens(msg, name) = [lowercase(strip(t)) for t in split(header(msg, name), ',') if !isempty(strip(t))]

"""
    isupgrade(msg) -> Bool

For a `Request`: whether it asks for a WebSocket upgrade (GET, `Connection:
upgrade`, `Upgrade: websocket`). For a `Response`: whether it is a `101`
switching to WebSocket. As HTTP.jl's `WebSockets.isupgrade`.
"""
isupgrade(req::Request) =
    req.method == "GET" && hasheader(req, "Connection", "upgrade") && hasheader(req, "Upgrade", "websocket")
isupgrade(resp::Response) =
    resp.status == 101 && hasheader(resp, "Connection", "upgrade") && hasheader(resp, "Upgrade", "websocket")

"""    origin(req) — the Origin header, "" when absent (WebSockets.jl's `origin`)."""
origin(req::Request) = header(req, "Origin")
"""    target(req) — the request target (WebSockets.jl's `target`)."""
target(req::Request) = req.target

# ---------------------------------------------------------------- the handle

"""
    WebSocket

One connection, from `WebSockets.open` (client) or handed to a `listen`
handler (server). `ws.request` (also `ws.handshake_request`) is the upgrade
request; `ws.response` (`ws.handshake_response`) the handshake response
(client side).
"""
mutable struct WebSocket
    # Guarded by `lk`, which is never held across a yield:
    ptr::Ptr{Cvoid}      # C_NULL once freed
    users::Int           # calls in progress on ptr (some wait in poll_fd)
    freeing::Bool        # release! was called; the last user frees
    backlog::Vector{Union{String,Vector{UInt8}}}   # messages taken from C but not yet returned
    closebody::Union{Nothing,CloseFrameBody}       # snapshot taken when freed
    lk::Threads.SpinLock
    # Set once, or only written by this binding:
    fd::Base.RawFD
    client::Bool
    request::Union{Nothing,Request}
    response::Union{Nothing,Response}
    subprotocol::String
    closed_locally::Bool  # we started the close: iteration then ends quietly whatever the code
    sendlock::ReentrantLock  # one message (all its fragments) at a time, as HTTP.jl's sendlock
end

function WebSocket(p::Ptr{Cvoid}, client::Bool, request, response, subprotocol::String)
    fd = ccall(wsym(:ws_fileno), Cint, (Ptr{Cvoid},), p)
    ws = WebSocket(p, 0, false, Union{String,Vector{UInt8}}[], nothing, Threads.SpinLock(), Base.RawFD(fd),
                   client, request, response, subprotocol, false, ReentrantLock())
    finalizer(finalize_ws, ws)  # a safety net: close(ws) and open(f) free deterministically
    return ws
end

# HTTP.jl 2.x spells the handshake fields handshake_request/handshake_response.
function Base.getproperty(ws::WebSocket, s::Symbol)
    s === :handshake_request && return getfield(ws, :request)
    s === :handshake_response && return getfield(ws, :response)
    return getfield(ws, s)
end

# Runs only when nothing references ws, so nobody is using the handle.
function finalize_ws(ws::WebSocket)
    p = ws.ptr
    ws.ptr = C_NULL
    p == C_NULL || ccall(wsym(:ws_free), Cvoid, (Ptr{Cvoid},), p)
    return nothing
end

function close_snapshot(p::Ptr{Cvoid})
    code = ccall(wsym(:ws_close_code), Cint, (Ptr{Cvoid},), p)
    reason = cstr(ccall(wsym(:ws_close_reason), Ptr{UInt8}, (Ptr{Cvoid},), p))
    # 0 means still open: freeing an open connection closes it (1001) without
    # waiting for the peer, so from our side it simply went away.
    return code == 0 ? CloseFrameBody(1006, "connection released") : CloseFrameBody(Int(code), reason)
end

# Every C call on a connection happens between acquire and unacquire, so that
# a concurrent free (close, the end of open(f), a server shutdown) never pulls
# the handle — or the descriptor a task is polling — from under it.
function acquire(ws::WebSocket)
    lock(ws.lk)
    p = ws.freeing ? C_NULL : ws.ptr
    p == C_NULL || (ws.users += 1)
    unlock(ws.lk)
    return p
end

function unacquire(ws::WebSocket)
    lock(ws.lk)
    ws.users -= 1
    p = (ws.users == 0 && ws.freeing) ? ws.ptr : C_NULL
    if p != C_NULL
        ws.closebody = close_snapshot(p)
        ws.ptr = C_NULL
    end
    unlock(ws.lk)
    p == C_NULL || ccall(wsym(:ws_free), Cvoid, (Ptr{Cvoid},), p)
    return nothing
end

"""
    release!(ws)

Frees the C connection now (closing it with 1001 if still open, without
waiting), or, if other tasks are inside calls on it, as soon as the last one
returns. Idempotent. `close(ws)` and `open(f, url)` call it for you.
"""
function release!(ws::WebSocket)
    lock(ws.lk)
    p = C_NULL
    if ws.ptr != C_NULL && !ws.freeing
        ws.freeing = true
        if ws.users == 0
            p = ws.ptr
            ws.closebody = close_snapshot(p)
            ws.ptr = C_NULL
        end
    end
    unlock(ws.lk)
    p == C_NULL || ccall(wsym(:ws_free), Cvoid, (Ptr{Cvoid},), p)
    return nothing
end

function closed_error(ws::WebSocket)
    lock(ws.lk)
    b = ws.closebody
    unlock(ws.lk)
    return WebSocketError(something(b, CloseFrameBody(1006, "connection released")))
end

# ---------------------------------------------------------------- options

# HTTP.jl keywords that have no meaning here; accepted silently (docs/julia.md).
const IGNORED_KEYWORDS = (
    :verbose, :compress, :permessage_deflate, :nagle, :quickack, :maxfragmentation, :binary,
    :retry, :retries, :retry_non_idempotent, :redirect, :redirect_limit, :redirect_method,
    :forwardheaders, :status_exception, :logerrors, :logtag, :observelayers, :pool, :reuse_limit,
    :socket_type, :socket_type_tls, :proxy, :detect_content_type, :decompress, :canonicalize_headers,
    :basicauth, :cookies, :cookiejar, :iofunction, :connection_limit, :sslconfig_tls, :client,
    :response_header_timeout, :write_idle_timeout, :read_buffer_bytes,
    :reuseaddr, :backlog, :server, :tcpisvalid, :on_shutdown, :access_log,
    :max_connections, :stream, :init, :suppress_close_error,
)

# The keys a `tls_config` NamedTuple/Dict may carry: the TLS keywords below.
const TLS_KEYWORDS = (:certfile, :keyfile, :cert, :key, :cert_pem, :key_pem, :cafile, :capath, :verify_client)

# Seconds (HTTP.jl's unit) to the C milliseconds; Inf (or 0 where HTTP.jl
# means "none") is -1. A positive value never rounds down to 0, which C reads
# as "do not wait at all".
function ms(name::Symbol, seconds; none_at_zero::Bool=false)
    (seconds isa Real && !isnan(seconds) && seconds >= 0) ||
        throw(ArgumentError("$name must be a number of seconds ≥ 0, got $(repr(seconds))"))
    (isinf(seconds) || (none_at_zero && seconds == 0)) && return Cint(-1)
    seconds == 0 && return Cint(0)
    return Cint(clamp(round(1000 * float(seconds)), 1, typemax(Cint)))
end

function check(rc::Integer, what)
    rc == WS_OK && return nothing
    rc == WS_EINVAL && throw(ArgumentError("invalid $what"))
    throw(lib_error(rc))
end

# `subprotocols="chat"` means one name, not four one-letter ones.
string_list(x) = x === nothing ? String[] : x isa AbstractString ? [String(x)] : String[string(y) for y in x]

function positive_size(name::Symbol, n)
    (n isa Integer && n > 0) || throw(ArgumentError("$name must be a positive integer, got $(repr(n))"))
    return UInt64(n)
end

# `tls_config=(certfile=..., keyfile=...)`: the TLS keywords gathered in one
# NamedTuple or Dict (HTTP.jl 2.x takes a TLS.Config object there, which
# cannot configure wscore's OpenSSL).
function tls_settings(tls_config)
    tls_config === nothing && return Dict{Symbol,Any}()
    tls_config isa Union{NamedTuple,AbstractDict} || throw(ArgumentError(
        "tls_config must be a NamedTuple or Dict of $(join(TLS_KEYWORDS, ", ")) " *
        "(an HTTP.jl TLS.Config object cannot configure wscore), got $(typeof(tls_config))"))
    cfg = Dict{Symbol,Any}(Symbol(k) => v for (k, v) in pairs(tls_config))
    bad = [k for k in keys(cfg) if !(k in TLS_KEYWORDS)]
    isempty(bad) || throw(ArgumentError("tls_config: unknown settings $(join(bad, ", ")); known: $(join(TLS_KEYWORDS, ", "))"))
    return cfg
end

# A ws_options for the keywords, freed after f(opts) returns.
function with_options(f; headers=Pair{String,String}[], subprotocols=nothing,
                      maxframesize=nothing, maxmessagesize=nothing, connect_timeout=nothing,
                      request_timeout=nothing, handshake_timeout=nothing, readtimeout=0,
                      read_idle_timeout=0, close_timeout=5, ping_interval=nothing, pong_timeout=nothing,
                      send_queue_limit=nothing, receive_queue_limit=nothing, origins=nothing, require_origin::Bool=false,
                      manual_upgrade::Bool=false, require_ssl_verification::Bool=true, sslconfig=nothing,
                      tls_config=nothing, cafile=nothing, capath=nothing, certfile=nothing, keyfile=nothing,
                      cert=nothing, key=nothing, cert_pem=nothing, key_pem=nothing,
                      verify_client::Union{Nothing,Bool}=nothing, kw...)
    sslconfig === nothing || throw(ArgumentError(
        "sslconfig (an MbedTLS/OpenSSL config object) cannot be used by wscore: pass certfile/keyfile " *
        "(servers), cafile/capath (clients), or tls_config=(certfile=..., keyfile=...)"))
    tls = tls_settings(tls_config)
    unknown = [k for k in keys(kw) if !(k in IGNORED_KEYWORDS)]
    isempty(unknown) || @warn "WSCore.WebSockets ignores unknown keywords $(join(unknown, ", "))" maxlog = 1
    # A keyword given directly wins over the same setting in tls_config.
    cafile = something(cafile, get(tls, :cafile, nothing), Some(nothing))
    capath = something(capath, get(tls, :capath, nothing), Some(nothing))
    certfile = something(certfile, cert, get(tls, :certfile, nothing), get(tls, :cert, nothing), Some(nothing))
    keyfile = something(keyfile, key, get(tls, :keyfile, nothing), get(tls, :key, nothing), Some(nothing))
    cert_pem = something(cert_pem, get(tls, :cert_pem, nothing), Some(nothing))
    key_pem = something(key_pem, get(tls, :key_pem, nothing), Some(nothing))
    verify_client = something(verify_client, get(tls, :verify_client, nothing), false)
    verify_client isa Bool || throw(ArgumentError("verify_client must be a Bool, got $(repr(verify_client))"))
    o = ccall(wsym(:ws_options_new), Ptr{Cvoid}, ())
    o == C_NULL && throw(OutOfMemoryError())
    try
        # Both bound the whole ws_open (DNS, TCP, TLS, upgrade): the smaller wins; -1 = none.
        limits = Cint[]
        connect_timeout === nothing || push!(limits, ms(:connect_timeout, connect_timeout; none_at_zero=true))
        request_timeout === nothing || push!(limits, ms(:request_timeout, request_timeout; none_at_zero=true))
        if !isempty(limits)
            bounded = filter(>=(0), limits)
            check(ccall(wsym(:ws_options_set_connect_timeout), Cint, (Ptr{Cvoid}, Cint), o,
                        isempty(bounded) ? Cint(-1) : minimum(bounded)), "connect_timeout")
        end
        handshake_timeout === nothing || check(ccall(wsym(:ws_options_set_handshake_timeout), Cint,
            (Ptr{Cvoid}, Cint), o, ms(:handshake_timeout, handshake_timeout)), "handshake_timeout")
        check(ccall(wsym(:ws_options_set_close_timeout), Cint, (Ptr{Cvoid}, Cint), o,
                    ms(:close_timeout, close_timeout)), "close_timeout")
        # HTTP.jl's readtimeout (1.x) / read_idle_timeout (2.x): close a connection
        # that received nothing for that long; 0 = never.
        idles = filter(>=(0), Cint[ms(:readtimeout, readtimeout; none_at_zero=true),
                                   ms(:read_idle_timeout, read_idle_timeout; none_at_zero=true)])
        isempty(idles) || check(ccall(wsym(:ws_options_set_idle_timeout), Cint, (Ptr{Cvoid}, Cint), o,
                                      minimum(idles)), "readtimeout")
        if ping_interval !== nothing
            pt = something(pong_timeout, 2 * ping_interval)  # HTTP.jl's default: twice the interval
            check(ccall(wsym(:ws_options_set_keepalive), Cint, (Ptr{Cvoid}, Cint, Cint), o,
                        ms(:ping_interval, ping_interval), ms(:pong_timeout, pt)), "ping_interval/pong_timeout")
        end
        # wscore bounds whole messages, not frames: maxframesize (HTTP.jl) becomes
        # the message limit, which is stricter; maxmessagesize says it directly.
        limit = something(maxmessagesize, maxframesize, Some(nothing))
        limit === nothing || check(ccall(wsym(:ws_options_set_max_message_size), Cint, (Ptr{Cvoid}, UInt64),
                                         o, positive_size(:maxmessagesize, limit)), "maxmessagesize")
        send_queue_limit === nothing || check(ccall(wsym(:ws_options_set_send_queue_limit), Cint,
            (Ptr{Cvoid}, Csize_t), o, Csize_t(positive_size(:send_queue_limit, send_queue_limit))), "send_queue_limit")
        receive_queue_limit === nothing || check(ccall(wsym(:ws_options_set_receive_queue_limit), Cint,
            (Ptr{Cvoid}, Csize_t), o, Csize_t(positive_size(:receive_queue_limit, receive_queue_limit))),
            "receive_queue_limit")
        # Sends never park the thread: a full queue answers WS_EAGAIN and the task yields.
        check(ccall(wsym(:ws_options_set_send_timeout), Cint, (Ptr{Cvoid}, Cint), o, Cint(0)), "send_timeout")
        protocols = string_list(subprotocols)
        for (k, v) in headers
            # HTTP.jl 1.x has no subprotocols keyword: its users offer them with this
            # header, which wscore writes itself; so it becomes the keyword.
            if lowercase(string(k)) == "sec-websocket-protocol"
                append!(protocols, [String(strip(t)) for t in split(string(v), ',') if !isempty(strip(t))])
                continue
            end
            check(ccall(wsym(:ws_options_add_header), Cint, (Ptr{Cvoid}, Cstring, Cstring), o, string(k), string(v)),
                  "header $(repr(string(k) => string(v))) (Host, Upgrade, Connection and Sec-WebSocket-* are set by wscore)")
        end
        for sp in protocols
            check(ccall(wsym(:ws_options_add_subprotocol), Cint, (Ptr{Cvoid}, Cstring), o, sp),
                  "subprotocol $(repr(sp))")
        end
        for org in string_list(origins)
            check(ccall(wsym(:ws_options_add_origin), Cint, (Ptr{Cvoid}, Cstring), o, string(org)), "origin $(repr(org))")
        end
        require_origin && check(ccall(wsym(:ws_options_set_require_origin), Cint, (Ptr{Cvoid}, Cint), o, Cint(1)),
                                "require_origin")
        manual_upgrade && check(ccall(wsym(:ws_options_set_manual_upgrade), Cint, (Ptr{Cvoid}, Cint), o, Cint(1)),
                                "manual upgrade")
        require_ssl_verification || check(ccall(wsym(:ws_options_set_tls_insecure_skip_verify), Cint,
                                                (Ptr{Cvoid}, Cint), o, Cint(1)), "require_ssl_verification")
        cafile === nothing || check(ccall(wsym(:ws_options_set_tls_ca_file), Cint, (Ptr{Cvoid}, Cstring), o,
                                          string(cafile)), "cafile")
        capath === nothing || check(ccall(wsym(:ws_options_set_tls_ca_dir), Cint, (Ptr{Cvoid}, Cstring), o,
                                          string(capath)), "capath")
        certfile === nothing || check(ccall(wsym(:ws_options_set_tls_cert_file), Cint, (Ptr{Cvoid}, Cstring), o,
                                            string(certfile)), "certfile")
        keyfile === nothing || check(ccall(wsym(:ws_options_set_tls_key_file), Cint, (Ptr{Cvoid}, Cstring), o,
                                           string(keyfile)), "keyfile")
        cert_pem === nothing || check(ccall(wsym(:ws_options_set_tls_cert_pem), Cint, (Ptr{Cvoid}, Cstring), o,
                                            string(cert_pem)), "cert_pem")
        key_pem === nothing || check(ccall(wsym(:ws_options_set_tls_key_pem), Cint, (Ptr{Cvoid}, Cstring), o,
                                           string(key_pem)), "key_pem")
        verify_client && check(ccall(wsym(:ws_options_set_tls_verify_client), Cint, (Ptr{Cvoid}, Cint), o, Cint(1)),
                               "verify_client")
        return f(o)
    finally
        ccall(wsym(:ws_options_free), Cvoid, (Ptr{Cvoid},), o)
    end
end

# The library's copy of the handshake head, once it is read into Julia strings
# (about 200 bytes of an idle connection's memory in the library).
release_handshake(p::Ptr{Cvoid}) = ccall(wsym(:ws_release_handshake), Cint, (Ptr{Cvoid},), p)

function read_headers(p::Ptr{Cvoid})
    n = ccall(wsym(:ws_header_count), Cint, (Ptr{Cvoid},), p)
    return Pair{String,String}[
        cstr(ccall(wsym(:ws_header_name), Ptr{UInt8}, (Ptr{Cvoid}, Cint), p, Cint(i))) =>
        cstr(ccall(wsym(:ws_header_value), Ptr{UInt8}, (Ptr{Cvoid}, Cint), p, Cint(i))) for i in 0:n-1]
end

# ---------------------------------------------------------------- client

# RFC 3986 percent-encoding of everything but the unreserved characters.
function escape_component(s::AbstractString)
    io = IOBuffer()
    for b in codeunits(String(s))
        if UInt8('A') <= b <= UInt8('Z') || UInt8('a') <= b <= UInt8('z') || UInt8('0') <= b <= UInt8('9') ||
           b in codeunits("-._~")
            write(io, b)
        else
            print(io, '%', uppercase(string(b; base=16, pad=2)))
        end
    end
    return String(take!(io))
end

# HTTP.jl's `query` keyword: a string as given, or key => value pairs (a Dict,
# a NamedTuple, a vector of pairs), each part percent-encoded.
query_string(q::AbstractString) = String(q)
query_string(q) = join((escape_component(string(k)) * "=" * escape_component(string(v))
                        for (k, v) in (q isa NamedTuple ? pairs(q) : q)), "&")

"""
    WebSockets.open(f, url; headers=[], subprotocols=nothing, query=nothing, maxframesize,
                    connect_timeout, read_idle_timeout, ping_interval,
                    require_ssl_verification=true, cafile, capath, certfile, keyfile,
                    suppress_close_error=false, kw...) -> f(ws)'s value
    WebSockets.open(url; kw...) -> WebSocket

Opens a client connection to a `ws://` or `wss://` URL (`http://`/`https://`
are read as `ws://`/`wss://`, as in HTTP.jl). With `f`, runs `f(ws)` and
closes the connection afterwards (1000), returning `f`'s value; as in HTTP.jl
1.x an error in `f` closes with 1008 (or with the code of a `WebSocketError`
it threw), is logged unless `suppress_close_error`, and is rethrown unless it
is a normal close (`isok`). Without `f`, returns the open `WebSocket`: `close` it.

Failures to connect throw `WSCoreError` (`name` "WS_ECONNREFUSED",
"WS_ETIMEDOUT", "WS_EHANDSHAKE" with the HTTP `status`, "WS_ETLS", ...).
"""
function open(f::Function, url::AbstractString; suppress_close_error::Bool=false, kw...)
    ws = open(url; kw...)
    try
        return f(ws)
    catch e
        isok(e) || suppress_close_error || @error "WebSocket client handler failed" exception = (e, catch_backtrace())
        if !isclosed(ws)
            body = e isa WebSocketError && e.message isa CloseFrameBody && sendable(e.message.code) ? e.message :
                   CloseFrameBody(1008, "Unexpected client websocket error")
            quietly_close(ws, body)
        end
        isok(e) || rethrow()
        return nothing
    finally
        isclosed(ws) || quietly_close(ws, CloseFrameBody(1000, ""))
        release!(ws)
    end
end

function open(url::AbstractString; query=nothing, kw...)
    u = String(url)
    occursin(r"^(wss?|https?)://"i, u) || throw(ArgumentError("not a ws://, wss://, http:// or https:// URL: $(repr(u))"))
    u = replace(u, r"^http"i => "ws")   # http:// -> ws://, https:// -> wss://
    if query !== nothing
        q = query_string(query)
        isempty(q) || (u = string(u, occursin('?', u) ? "&" : "?", q))
    end
    out = Ref{Ptr{Cvoid}}(C_NULL)
    # ws_open blocks during DNS/TCP/TLS/handshake (at most connect_timeout):
    # on libuv's thread pool it leaves this thread free for other tasks.
    rc = with_options(; kw...) do o
        @threadcall(FP_WS_OPEN[], Cint, (Cstring, Ptr{Cvoid}, Ptr{Ptr{Cvoid}}), u, o, out)
    end
    p = out[]
    if rc != WS_OK
        # A refused handshake (or a failed TLS one) leaves a closed connection for diagnostics.
        status = p == C_NULL ? 0 : ccall(wsym(:ws_http_status), Cint, (Ptr{Cvoid},), p)
        err = lib_error(rc, p; status)
        ccall(wsym(:ws_free), Cvoid, (Ptr{Cvoid},), p)
        throw(err)
    end
    m = match(r"^wss?://[^/?#]*([^#]*)"i, u)
    tgt = isempty(m[1]) ? "/" : (startswith(m[1], "?") ? "/" * m[1] : m[1])
    path, qry = let i = findfirst('?', tgt)
        i === nothing ? (tgt, "") : (tgt[1:prevind(tgt, i)], tgt[i+1:end])
    end
    hdrs = Pair{String,String}[string(k) => string(v) for (k, v) in get(kw, :headers, Pair{String,String}[])]
    req = Request("GET", tgt, path, qry, hdrs)
    resp = Response(Int(ccall(wsym(:ws_http_status), Cint, (Ptr{Cvoid},), p)), read_headers(p))
    sp = cstr(ccall(wsym(:ws_subprotocol), Ptr{UInt8}, (Ptr{Cvoid},), p))
    release_handshake(p)  # resp holds the headers now
    return WebSocket(p, true, req, resp, sp)
end

# ---------------------------------------------------------------- receiving

# One non-blocking ws_receive: (WS_OK, message) or (rc, nothing).
function try_receive(p::Ptr{Cvoid})
    out = Ref{Ptr{Cvoid}}(C_NULL)
    rc = ccall(wsym(:ws_receive), Cint, (Ptr{Cvoid}, Ptr{Ptr{Cvoid}}, Cint), p, out, Cint(0))
    rc == WS_OK || return (rc, nothing)
    m = out[]
    try
        n = ccall(wsym(:ws_message_size), Csize_t, (Ptr{Cvoid},), m)
        data = ccall(wsym(:ws_message_data), Ptr{UInt8}, (Ptr{Cvoid},), m)
        t = ccall(wsym(:ws_message_type), Cint, (Ptr{Cvoid},), m)
        # The one copy, into memory Julia owns; the C message is freed right after.
        t == WS_TEXT && return (rc, unsafe_string(data, n))
        v = Vector{UInt8}(undef, n)
        GC.@preserve v unsafe_copyto!(pointer(v), data, n)
        return (rc, v)
    finally
        ccall(wsym(:ws_message_free), Cvoid, (Ptr{Cvoid},), m)
    end
end

# The next message without waiting: the oldest one kept in the backlog (by
# close's drain or isready), else one from C. Backlog and C are both read
# under lk, and the backlog is only filled under lk, so messages keep their
# order whichever task takes them.
function take_next!(ws::WebSocket, p::Ptr{Cvoid})
    Base.@lock ws.lk begin
        isempty(ws.backlog) || return (WS_OK, popfirst!(ws.backlog))
        return try_receive(p)
    end
end

"""
    receive(ws) -> String or Vector{UInt8}

The next message (fragments joined; pings answered inside): a `String` for
text, a `Vector{UInt8}` for binary. Waits in the scheduler, not on the thread.
Throws `WebSocketError(CloseFrameBody(code, reason))` once the connection is
closed, normal closes included; messages that arrived before the close are
returned first.

When the peer closes while messages it sent are unread, wscore holds its
answer until `receive` has returned them and is called again (or the close
timeout passes), so replies sent in between go out ahead of the close.
"""
function receive(ws::WebSocket)
    while true
        p = acquire(ws)
        if p == C_NULL  # freed by close(): what it kept, then the close
            m = Base.@lock ws.lk (isempty(ws.backlog) ? nothing : popfirst!(ws.backlog))
            m === nothing || return m
            throw(closed_error(ws))
        end
        try
            rc, msg = take_next!(ws, p)
            rc == WS_OK && return msg
            if rc == WS_EAGAIN
                poll_fd(ws.fd, -1; readable=true)  # ws_fileno is readable once a message or the close is there
            elseif rc == WS_ECLOSED
                throw(WebSocketError(close_snapshot(p)))
            else
                throw(lib_error(rc, p))
            end
        finally
            unacquire(ws)
        end
    end
end

"""
    isready(ws) -> Bool

Whether `receive(ws)` would return a message at once. (False on a closed
connection with nothing left to read, where `receive` throws.) Like
`receive`, asking when nothing is left tells wscore that everything the peer
sent was read, so a close the peer sent is answered then.
"""
function Base.isready(ws::WebSocket)
    p = acquire(ws)
    try
        return Base.@lock ws.lk begin
            if isempty(ws.backlog) && p != C_NULL
                # Taken to answer the question, the message waits in the backlog for receive.
                rc, msg = try_receive(p)
                rc == WS_OK && push!(ws.backlog, msg)
            end
            !isempty(ws.backlog)
        end
    finally
        p == C_NULL || unacquire(ws)
    end
end

"""
Iteration yields messages and ends quietly on a normal close (1000, 1001,
1005) or after our own `close`; other closes (e.g. 1006, a dropped
connection) are rethrown.
"""
function Base.iterate(ws::WebSocket, state=nothing)
    try
        return (receive(ws), nothing)
    catch e
        (isok(e) || (e isa WebSocketError && ws.closed_locally)) && return nothing
        rethrow()
    end
end
Base.IteratorSize(::Type{WebSocket}) = Base.SizeUnknown()
Base.eltype(::Type{WebSocket}) = Union{String,Vector{UInt8}}

# ---------------------------------------------------------------- sending

# One ws_send (fin === nothing) or ws_send_fragment call, retried while the
# send queue is full: the task sleeps, the thread keeps running others.
function send_frame(ws::WebSocket, data::Union{String,SubString{String},Vector{UInt8}}, typ::Cint,
                    fin::Union{Nothing,Bool})
    n = sizeof(data)
    while true
        p = acquire(ws)
        p == C_NULL && throw(closed_error(ws))
        rc = try
            GC.@preserve data begin
                if fin === nothing
                    ccall(wsym(:ws_send), Cint, (Ptr{Cvoid}, Ptr{UInt8}, Csize_t, Cint), p, pointer(data), n, typ)
                else
                    ccall(wsym(:ws_send_fragment), Cint, (Ptr{Cvoid}, Ptr{UInt8}, Csize_t, Cint, Cint),
                          p, pointer(data), n, typ, Cint(fin))
                end
            end
        finally
            unacquire(ws)
        end
        rc == WS_OK && return n
        rc == WS_EAGAIN || throw(send_error(ws, rc))
        sleep(0.001)
    end
end

# A send on a connection whose close has started (WS_ESTATE then) or ended
# (WS_ECLOSED) is a WebSocketError, as in HTTP.jl; other failures are the library's.
function send_error(ws::WebSocket, rc::Integer)
    p = acquire(ws)
    p == C_NULL && return closed_error(ws)
    try
        if rc == WS_ECLOSED || (rc == WS_ESTATE && ccall(wsym(:ws_state), Cint, (Ptr{Cvoid},), p) != WS_STATE_OPEN)
            code = ccall(wsym(:ws_close_code), Cint, (Ptr{Cvoid},), p)
            return WebSocketError(code == 0 ? CloseFrameBody(1006, "websocket is closing") : close_snapshot(p))
        end
        return lib_error(rc, p)
    finally
        unacquire(ws)
    end
end

# A send argument as bytes C can read in place, and its message type.
payload(x::Union{String,SubString{String}}) = (x, WS_TEXT)
payload(x::AbstractString) = (String(x), WS_TEXT)
payload(x::Vector{UInt8}) = (x, WS_BINARY)
payload(x::AbstractVector{UInt8}) = (Vector{UInt8}(x), WS_BINARY)
payload(x) = (string(x), WS_TEXT)  # as HTTP.jl: other fragment values are sent as their text

"""
    send(ws, msg) -> Int

`AbstractString` → one text message; `AbstractVector{UInt8}` → one binary
message; any other iterable → one message with one fragment per element (its
type is the first element's; an empty iterable sends an empty text message).
Returns the payload bytes sent, as HTTP.jl 2.x. Waits in the scheduler while
the send queue is full. Concurrent `send`s from several tasks are serialised
message by message.
"""
function send(ws::WebSocket, x::Union{AbstractString,AbstractVector{UInt8}})
    data, typ = payload(x)
    return Base.@lock ws.sendlock send_frame(ws, data, typ, nothing)
end

function send(ws::WebSocket, parts)
    Base.@lock ws.sendlock begin
        st = iterate(parts)
        st === nothing && return send_frame(ws, "", WS_TEXT, nothing)
        started = false
        typ = WS_TEXT
        total = 0
        try
            while st !== nothing
                item, s = st
                nxt = iterate(parts, s)
                data, t = payload(item)
                started || (typ = t)
                total += send_frame(ws, data, typ, nxt === nothing)
                started = true
                st = nxt
            end
        catch
            # A message cannot be abandoned halfway in RFC 6455, and every later
            # send would fail (WS_ESTATE): end the connection honestly.
            started && quietly_close(ws, CloseFrameBody(1011, "message aborted"))
            rethrow()
        end
        return total
    end
end

"""
    send_batch(ws, msgs) -> Int

A wscore addition: sends each element of `msgs` (strings or byte vectors) as
its own message, holding the send lock once. Returns the payload bytes sent.
"""
function send_batch(ws::WebSocket, msgs)
    Base.@lock ws.sendlock begin
        total = 0
        for m in msgs
            (m isa AbstractString || m isa AbstractVector{UInt8}) ||
                throw(ArgumentError("send_batch entries must be AbstractString or AbstractVector{UInt8}"))
            data, typ = payload(m)
            total += send_frame(ws, data, typ, nothing)
        end
        return total
    end
end

function control_bytes(data)
    b = data isa AbstractVector{UInt8} ? Vector{UInt8}(data) : Vector{UInt8}(codeunits(string(data)))
    length(b) <= 125 || throw(ArgumentError("ping/pong data is at most 125 bytes, got $(length(b))"))
    return b
end

function control(ws::WebSocket, sym::Symbol, data)
    b = control_bytes(data)
    while true
        p = acquire(ws)
        p == C_NULL && throw(closed_error(ws))
        rc = try
            if sym === :ping
                GC.@preserve b ccall(wsym(:ws_ping), Cint, (Ptr{Cvoid}, Ptr{UInt8}, Csize_t), p, pointer(b), length(b))
            else
                GC.@preserve b ccall(wsym(:ws_pong), Cint, (Ptr{Cvoid}, Ptr{UInt8}, Csize_t), p, pointer(b), length(b))
            end
        finally
            unacquire(ws)
        end
        rc == WS_OK && return nothing
        rc == WS_EAGAIN || throw(send_error(ws, rc))
        sleep(0.001)
    end
end

"""    ping(ws, data=UInt8[]) — sends a ping (≤ 125 bytes); the peer's pong is handled inside."""
ping(ws::WebSocket, data=UInt8[]) = control(ws, :ping, data)
"""    pong(ws, data=UInt8[]) — sends an unsolicited pong (a one-way heartbeat)."""
pong(ws::WebSocket, data=UInt8[]) = control(ws, :pong, data)

# ---------------------------------------------------------------- closing

# Codes a close frame may carry (RFC 6455 7.4); 1005 means "send no code".
sendable(code::Integer) = code in 1000:1003 || code in 1007:1014 || code in 3000:4999

"""
    close(ws, body=CloseFrameBody(1000, ""))
    close(ws; statusnumber=1000, freereason="")   # WebSockets.jl

Sends a close frame with `body`'s code and reason (≤ 123 bytes of UTF-8). As
in HTTP.jl 2.x a code a close frame cannot carry (outside 1000-1003,
1007-1014, 3000-4999) is sent as 1002 "invalid close status code"; 1005 sends
a close without a code. Then waits up to the close timeout (5 s; the
`close_timeout` keyword of `open`/`listen`) for the peer's close, and frees the
connection. Messages that arrive meanwhile stay readable with `receive`.
Closing a closed connection does nothing.
"""
function Base.close(ws::WebSocket, body::Union{Nothing,CloseFrameBody}=nothing;
                    statusnumber::Union{Nothing,Integer}=nothing, freereason::Union{Nothing,AbstractString}=nothing)
    if statusnumber !== nothing || freereason !== nothing
        body = CloseFrameBody(something(statusnumber, 1000), something(freereason, ""))
    end
    body = something(body, CloseFrameBody(1000, ""))
    code, reason = body.code, body.reason
    if !(sendable(code) || code == 1005)
        code, reason = 1002, "invalid close status code"
    end
    sizeof(reason) <= 123 || throw(ArgumentError("close reason is $(sizeof(reason)) bytes; at most 123"))
    isvalid(reason) || throw(ArgumentError("close reason is not valid UTF-8"))
    p = acquire(ws)
    p == C_NULL && return nothing
    try
        ws.closed_locally = true
        # Blocks until the peer answers or the close timeout: on libuv's thread pool.
        rc = @threadcall(FP_WS_CLOSE[], Cint, (Ptr{Cvoid}, Cint, Cstring), p, Cint(code == 1005 ? 0 : code), reason)
        # WS_ECLOSED: already closed; otherwise WS_OK or WS_ETIMEDOUT (closed anyway).
        rc == WS_EINVAL && throw(ArgumentError("invalid close code $code or reason $(repr(reason))"))
        # The connection is closed now; keep what arrived before the close, then
        # free. Each take and its push happen under lk (see take_next!).
        while true
            took = Base.@lock ws.lk begin
                rc2, msg = try_receive(p)
                rc2 == WS_OK && push!(ws.backlog, msg)
                rc2 == WS_OK
            end
            took || break
        end
    finally
        unacquire(ws)
    end
    release!(ws)
    return nothing
end
Base.close(ws::WebSocket, code::Integer, reason::AbstractString="") = close(ws, CloseFrameBody(code, reason))

# For cleanup paths: a close that fails (already closing elsewhere, peer gone)
# must not hide the error being handled.
function quietly_close(ws::WebSocket, body::CloseFrameBody)
    try
        close(ws, body)
    catch e
        @debug "close during cleanup failed" exception = e
    end
    return nothing
end

"""    isclosed(ws) — whether the connection is closed (or freed). Unread messages may remain: see `isready`."""
function isclosed(ws::WebSocket)
    p = acquire(ws)
    p == C_NULL && return true
    try
        return ccall(wsym(:ws_state), Cint, (Ptr{Cvoid},), p) == WS_STATE_CLOSED
    finally
        unacquire(ws)
    end
end
Base.isopen(ws::WebSocket) = !isclosed(ws)

"""    subprotocol(ws) — the negotiated subprotocol, "" when none."""
subprotocol(ws::WebSocket) = ws.subprotocol

"""    peer_address(ws) — "1.2.3.4:port" or "[::1]:port"; "" once freed."""
function peer_address(ws::WebSocket)
    p = acquire(ws)
    p == C_NULL && return ""
    try
        return cstr(ccall(wsym(:ws_peer_address), Ptr{UInt8}, (Ptr{Cvoid},), p))
    finally
        unacquire(ws)
    end
end

"""    bufferedamount(ws) — bytes queued for sending and not yet written to the socket."""
function bufferedamount(ws::WebSocket)
    p = acquire(ws)
    p == C_NULL && return 0
    try
        return Int(ccall(wsym(:ws_buffered_amount), Csize_t, (Ptr{Cvoid},), p))
    finally
        unacquire(ws)
    end
end

Base.show(io::IO, ws::WebSocket) =
    print(io, "WebSocket(", ws.client ? "client" : "server", ", ", isclosed(ws) ? "closed" : "open", ")")

# ---------------------------------------------------------------- server

"""
    Server

What `listen!` returns: `close(s)` (stop accepting, close every connection
with 1001, wait for the handlers), `forceclose(s)` (the same without waiting
for handlers), `wait(s)`, `isopen(s)`, `port(s)`, `server_addr(s)`.
"""
mutable struct Server
    ptr::Ptr{Cvoid}
    fd::Base.RawFD
    host::String
    port::Int
    task::Union{Task,Nothing}
    lock::ReentrantLock
    conns::Set{WebSocket}
    handlers::Set{Task}
    closing::Bool
end

"""
    server_addr(s) -> String

The "host:port" the server is bound to, ready for a URL:
`"ws://" * server_addr(s) * "/path"` (as HTTP.jl 2.x: a wildcard host reads as
the loopback address, IPv6 in brackets).
"""
function server_addr(s::Server)
    h = s.host == "0.0.0.0" ? "127.0.0.1" : s.host in ("::", "[::]") ? "::1" : s.host
    return occursin(':', h) && !startswith(h, "[") ? "[$h]:$(s.port)" : "$h:$(s.port)"
end
"""    port(s) — the bound port (useful after port 0 or `listenany=true`)."""
port(s::Server) = s.port
Base.isopen(s::Server) = !s.closing
Base.show(io::IO, s::Server) = print(io, "WebSockets.Server(", server_addr(s), s.closing ? ", closed)" : ")")

function server_request(p::Ptr{Cvoid})
    Request("GET", cstr(ccall(wsym(:ws_request_target), Ptr{UInt8}, (Ptr{Cvoid},), p)),
            cstr(ccall(wsym(:ws_request_path), Ptr{UInt8}, (Ptr{Cvoid},), p)),
            cstr(ccall(wsym(:ws_request_query), Ptr{UInt8}, (Ptr{Cvoid},), p)), read_headers(p))
end

# "host:port" / "[v6]:port" / "host" -> (lowercase host, port or nothing)
function split_host_port(s::AbstractString)
    m = match(r"^(\[[^\]]*\]|[^:]*)(?::(\d+))?$", s)
    m === nothing && return nothing
    return (lowercase(m[1]), m[2] === nothing ? nothing : parse(Int, m[2]))
end

"""
    same_origin(req, origin) -> Bool

HTTP.jl 2.x's default origin check: a client that sends no `Origin` (not a
browser) is let in; a browser must come from the host (and port) of the
request's `Host` header.
"""
function same_origin(req::Request, origin)
    origin === nothing && return true
    m = match(r"^(https?|wss?)://([^/?#]*)/?$"i, origin)
    m === nothing && return false
    o = split_host_port(m[2])
    h = split_host_port(header(req, "Host", ""))
    (o === nothing || h === nothing || isempty(h[1])) && return false
    o[1] == h[1] || return false
    h[2] === nothing && return true  # HTTP.jl: a Host without port compares the host alone
    return something(o[2], lowercase(m[1]) in ("https", "wss") ? 443 : 80) == h[2]
end

# HTTP.jl 2.x's check_origin: `f(request, origin)` or `f(request)`, with origin
# `nothing` when the client sent none; it must return a Bool.
function run_origin_check(checker, req::Request)
    org = hasheader(req, "Origin") ? header(req, "Origin") : nothing
    result = applicable(checker, req, org) ? checker(req, org) :
             applicable(checker, req) ? checker(req) :
             throw(ArgumentError("check_origin must accept (request, origin) or (request)"))
    result isa Bool || throw(ArgumentError("check_origin must return a Bool, got $(repr(result))"))
    return result
end

# Manual upgrade: the Julia origin check decides, then the chosen subprotocol
# is the client's first offer that the server supports (as the C library does).
function decide_upgrade!(ws::WebSocket, checker, supported)
    ok = try
        run_origin_check(checker, ws.request)
    catch e
        @error "check_origin failed; refusing the connection" exception = (e, catch_backtrace())
        false
    end
    p = acquire(ws)
    p == C_NULL && return false
    try
        if !ok
            body = "websocket origin rejected"
            GC.@preserve body ccall(wsym(:ws_upgrade_reject), Cint, (Ptr{Cvoid}, Cint, Ptr{UInt8}, Csize_t),
                                    p, Cint(403), pointer(body), sizeof(body))
            return false
        end
        # Subprotocol names are case-sensitive; the client's order is its preference.
        offered = [String(strip(t)) for t in split(header(ws.request, "Sec-WebSocket-Protocol"), ',')
                   if !isempty(strip(t))]
        ours = Set(string_list(supported))
        i = findfirst(in(ours), offered)
        sp = i === nothing ? "" : offered[i]
        rc = isempty(sp) ? ccall(wsym(:ws_upgrade_accept), Cint, (Ptr{Cvoid}, Ptr{UInt8}), p, C_NULL) :
                           ccall(wsym(:ws_upgrade_accept), Cint, (Ptr{Cvoid}, Cstring), p, sp)
        rc == WS_OK || return false
        ws.subprotocol = sp
        return true
    finally
        unacquire(ws)
    end
end

function serve_conn(f, s::Server, ws::WebSocket, checker, supported, suppress_close_error::Bool)
    try
        if checker !== nothing && !decide_upgrade!(ws, checker, supported)
            release!(ws)  # refused (403) or gone: nothing to close
            return
        end
        try
            f(ws)
        catch e
            isok(e) || suppress_close_error || (e isa WebSocketError && ws.closed_locally) ||
                @error "WebSocket server handler failed" exception = (e, catch_backtrace())
            if !isclosed(ws)
                body = e isa WebSocketError && e.message isa CloseFrameBody && sendable(e.message.code) ?
                       e.message : CloseFrameBody(1011, "Unexpected server websocket error")
                quietly_close(ws, body)
            end
        end
    finally
        isclosed(ws) || quietly_close(ws, CloseFrameBody(1000, ""))
        release!(ws)
        Base.@lock s.lock begin
            delete!(s.conns, ws)
            delete!(s.handlers, current_task())
        end
    end
end

function accept_loop(f, s::Server, checker, supported, suppress_close_error::Bool)
    out = Ref{Ptr{Cvoid}}(C_NULL)
    while true
        rc = ccall(wsym(:ws_accept), Cint, (Ptr{Cvoid}, Ptr{Ptr{Cvoid}}, Cint), s.ptr, out, Cint(0))
        if rc == WS_OK
            p = out[]
            # With a checker every connection comes in WS_STATE_CONNECTING (manual
            # upgrade), or already closed, which decide_upgrade! then refuses.
            sp = checker !== nothing ? "" : cstr(ccall(wsym(:ws_subprotocol), Ptr{UInt8}, (Ptr{Cvoid},), p))
            ws = WebSocket(p, false, server_request(p), nothing, sp)
            release_handshake(p)  # ws.request holds the request now
            Base.@lock s.lock begin
                push!(s.conns, ws)
                # Each connection gets its own task (spread over threads when julia has several).
                t = Threads.@spawn serve_conn(f, s, ws, checker, supported, suppress_close_error)
                push!(s.handlers, t)
            end
        elseif rc == WS_EAGAIN
            poll_fd(s.fd, -1; readable=true)  # ws_server_fileno: readable when a connection waits or on close
        elseif rc == WS_ECANCELED
            return
        else
            throw(lib_error(rc))
        end
    end
end

"""
    WebSockets.listen!(f, host="127.0.0.1", port=8080; subprotocols, check_origin, origins,
                       maxframesize, read_idle_timeout, ping_interval, listenany=false,
                       tls_config, certfile, keyfile, suppress_close_error=false, kw...) -> Server
    WebSockets.listen!(f, port; kw...)

Starts a server; each connection runs `f(ws)` in its own task and is closed
when `f` returns. Port 0 or `listenany=true` picks a free port: read it with
`server_addr(server)` or `port(server)`.

Origins, as HTTP.jl 2.x: `check_origin` is a function `(request, origin) -> Bool`
or `request -> Bool` (`origin` is `nothing` when the client sent none); without
it, browsers (clients sending `Origin`) are accepted only from the request's own
host and port. `origins` is instead an allowlist checked by the C library; with
it and no `check_origin`, any non-browser client is accepted. Refused clients
get HTTP 403.

TLS (wss://): `certfile` and `keyfile` (or `cert_pem`/`key_pem`), optionally
`cafile`/`capath` with `verify_client=true` for client certificates; or the same
gathered in `tls_config=(certfile=..., keyfile=...)`.

An error thrown by `f` is logged (unless `suppress_close_error` or a normal
close) and closes the connection with 1011.
"""
function listen!(f, host="127.0.0.1", port::Integer=8080;
                 check_origin=nothing, origins=nothing, subprotocols=nothing,
                 suppress_close_error::Bool=false, listenany::Bool=false, kw...)
    0 <= port <= 65535 || throw(ArgumentError("port must be in 0:65535, got $port"))
    check_origin === nothing || check_origin isa Function ||
        throw(ArgumentError("check_origin must be a function (request, origin) -> Bool or request -> Bool"))
    # The C allowlist replaces the default same-origin check.
    checker = check_origin !== nothing ? check_origin : origins === nothing ? same_origin : nothing
    h = string(host)
    bind_port = listenany ? 0 : Int(port)
    out = Ref{Ptr{Cvoid}}(C_NULL)
    rc = with_options(; subprotocols, origins, manual_upgrade=checker !== nothing, kw...) do o
        ccall(wsym(:ws_listen), Cint, (Cstring, Cint, Ptr{Cvoid}, Ptr{Ptr{Cvoid}}), h, Cint(bind_port), o, out)
    end
    rc == WS_OK || throw(lib_error(rc))
    p = out[]
    fd = ccall(wsym(:ws_server_fileno), Cint, (Ptr{Cvoid},), p)
    bound = ccall(wsym(:ws_server_port), Cint, (Ptr{Cvoid},), p)
    s = Server(p, Base.RawFD(fd), h, Int(bound), nothing, ReentrantLock(), Set{WebSocket}(), Set{Task}(), false)
    finalizer(finalize_server, s)  # a safety net: the accept task keeps a running server alive anyway
    s.task = errormonitor(@async accept_loop(f, s, checker, subprotocols, suppress_close_error))
    return s
end
listen!(f, port::Integer; kw...) = listen!(f, "127.0.0.1", port; kw...)

"""`serve!` is `listen!` (HTTP.jl 2.x's alias)."""
serve!(f, args...; kw...) = listen!(f, args...; kw...)

"""
    WebSockets.listen(f, host="127.0.0.1", port=8080; kw...) -> Server

`listen!` and wait until the server is closed (or interrupted, which closes it).
"""
function listen(f, host="127.0.0.1", port::Integer=8080; kw...)
    s = listen!(f, host, port; kw...)
    try
        wait(s)
    finally
        close(s)
    end
    return s
end
listen(f, port::Integer; kw...) = listen(f, "127.0.0.1", port; kw...)

function shutdown!(s::Server)
    first = Base.@lock s.lock begin
        was = s.closing
        s.closing = true
        # Our own shutdown: handlers see their iteration end quietly.
        foreach(ws -> ws.closed_locally = true, s.conns)
        !was
    end
    # Closes every connection with 1001 and wakes the accept loop (WS_ECANCELED).
    first && ccall(wsym(:ws_server_close), Cint, (Ptr{Cvoid},), s.ptr)
    s.task === nothing || wait(s.task)
    return nothing
end

# Runs only when nothing references s (so its accept task is gone too).
function finalize_server(s::Server)
    p = s.ptr
    s.ptr = C_NULL
    p == C_NULL || ccall(wsym(:ws_server_free), Cvoid, (Ptr{Cvoid},), p)
    return nothing
end

function free_server!(s::Server)
    p = Base.@lock s.lock begin
        q = s.ptr
        s.ptr = C_NULL
        q
    end
    p == C_NULL || ccall(wsym(:ws_server_free), Cvoid, (Ptr{Cvoid},), p)
    return nothing
end

"""Stops accepting, closes every connection with 1001 and waits for their handlers to return."""
function Base.close(s::Server)
    Base.@lock(s.lock, s.ptr == C_NULL) && return nothing   # closed before
    shutdown!(s)
    for t in Base.@lock(s.lock, collect(s.handlers))
        t === current_task() && continue  # close(server) from inside a handler must not wait for itself
        try
            wait(t)
        catch
            # serve_conn catches the handler's errors; nothing else to report here.
        end
    end
    free_server!(s)
    return nothing
end

"""Stops accepting and frees every connection at once, without waiting for handlers."""
function forceclose(s::Server)
    Base.@lock(s.lock, s.ptr == C_NULL) && return nothing
    shutdown!(s)
    foreach(release!, Base.@lock(s.lock, collect(s.conns)))
    free_server!(s)
    return nothing
end

Base.wait(s::Server) = s.task === nothing ? nothing : wait(s.task)

# ---------------------------------------------------------------- WebSockets.jl habits

"""    readguarded(ws) -> (data::Vector{UInt8}, success::Bool)   (WebSockets.jl 1.x)"""
function readguarded(ws::WebSocket)
    try
        m = receive(ws)
        return (m isa String ? Vector{UInt8}(m) : m, true)
    catch e
        (e isa WebSocketError || e isa WSCoreError) || rethrow()
        return (UInt8[], false)
    end
end

"""    writeguarded(ws, data) -> Bool   (WebSockets.jl 1.x)"""
function writeguarded(ws::WebSocket, data)
    try
        send(ws, data)
        return true
    catch e
        (e isa WebSocketError || e isa WSCoreError) || rethrow()
        return false
    end
end

"""    read(ws) -> Vector{UInt8}: the next message's bytes (WebSockets.jl 1.x)."""
Base.read(ws::WebSocket) = (m = receive(ws); m isa String ? Vector{UInt8}(m) : m)
"""    write(ws, msg) -> bytes sent: `send` (WebSockets.jl 1.x)."""
Base.write(ws::WebSocket, data::Union{AbstractString,AbstractVector{UInt8}}) = send(ws, data)

end # module
