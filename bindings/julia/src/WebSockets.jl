"""
    WSCore.WebSockets

A drop-in for `HTTP.WebSockets` (HTTP.jl 2.x; 1.x habits accepted): `open`,
`listen`, `listen!`, `send`, `receive`, `ping`, `pong`, `close`, iteration,
`WebSocketError`, `CloseFrameBody`, plus WebSockets.jl's `readguarded` and
`writeguarded`. Replace `using HTTP.WebSockets` with `using WSCore.WebSockets`.

No call parks an OS thread while it waits for the network: `receive` and the
server's accept wait in Julia's scheduler on the descriptor the C library
makes readable (`FileWatching.poll_fd`), then take the data with a
non-blocking call; sends use a zero send timeout and yield while the queue is
full; the two calls that must block in C (`ws_open`, `ws_close`) run on
libuv's thread pool through `@threadcall`.
"""
module WebSockets

using FileWatching: poll_fd
import Sockets: send   # extend Sockets.send as HTTP.jl does: `using Sockets` beside us does not clash
using ..LibWSCore: wsym, cstr, errname, strerror, FP_WS_OPEN, FP_WS_CLOSE, WS_OK, WS_EINVAL, WS_EAGAIN,
                   WS_ECLOSED, WS_ECANCELED, WS_TEXT, WS_BINARY, WS_STATE_CONNECTING, WS_STATE_CLOSED

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
is 1006. Also thrown by `send`, `ping` and `pong` on a closed connection.
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

The upgrade request a connection came with (`ws.request`): `method`, `target`
("/chat?room=1"), `path`, `query` and `headers` (a `Vector{Pair{String,String}}`).
Read a header with `WebSockets.header(req, name)` (case-insensitive).
"""
struct Request
    method::String
    target::String
    path::String
    query::String
    headers::Vector{Pair{String,String}}
end

"""The handshake response a client connection got (`ws.response`): `status`, `headers`."""
struct Response
    status::Int
    headers::Vector{Pair{String,String}}
end

"""
    header(msg, name, default="") -> String

A header of a `Request` or `Response`, by case-insensitive name (several with
one name come joined with ", "), like `HTTP.header`.
"""
function header(msg::Union{Request,Response}, name::AbstractString, default="")
    vals = [v for (k, v) in msg.headers if lowercase(k) == lowercase(name)]
    return isempty(vals) ? default : join(vals, ", ")
end

"""    hasheader(msg, name) / hasheader(msg, name, token) — like `HTTP.hasheader`."""
hasheader(msg::Union{Request,Response}, name::AbstractString) =
    any(p -> lowercase(p.first) == lowercase(name), msg.headers)
hasheader(msg::Union{Request,Response}, name::AbstractString, token::AbstractString) =
    lowercase(token) in header_tokens(msg, name)

header_tokens(msg, name) = [lowercase(strip(t)) for t in split(header(msg, name), ',') if !isempty(strip(t))]

"""    isupgrade(req) — whether `req` asks for a WebSocket upgrade (GET, Connection: upgrade, Upgrade: websocket)."""
isupgrade(req::Request) =
    req.method == "GET" && hasheader(req, "Connection", "upgrade") && hasheader(req, "Upgrade", "websocket")

"""    origin(req) — the Origin header, "" when absent (WebSockets.jl's `origin`)."""
origin(req::Request) = header(req, "Origin")
"""    target(req) — the request target (WebSockets.jl's `target`)."""
target(req::Request) = req.target

# ---------------------------------------------------------------- the handle

"""
    WebSocket

One connection, from `WebSockets.open` (client) or handed to a `listen`
handler (server). `ws.request` is the upgrade request; `ws.response` the
handshake response (client side).
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
    sendlock::ReentrantLock  # one message (all its fragments) at a time, as HTTP.jl's writelock
end

function WebSocket(p::Ptr{Cvoid}, client::Bool, request, response, subprotocol::String)
    fd = ccall(wsym(:ws_fileno), Cint, (Ptr{Cvoid},), p)
    ws = WebSocket(p, 0, false, Union{String,Vector{UInt8}}[], nothing, Threads.SpinLock(), Base.RawFD(fd),
                   client, request, response, subprotocol, false, ReentrantLock())
    finalizer(finalize_ws, ws)  # a safety net: close(ws) and open(f) free deterministically
    return ws
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

function take_backlog!(ws::WebSocket)
    lock(ws.lk)
    m = isempty(ws.backlog) ? nothing : popfirst!(ws.backlog)
    unlock(ws.lk)
    return m
end

# ---------------------------------------------------------------- options

# HTTP.jl keywords that have no meaning here; accepted silently (docs/julia.md).
const IGNORED_KEYWORDS = (
    :verbose, :compress, :permessage_deflate, :nagle, :quickack, :maxfragmentation, :binary,
    :retry, :retries, :retry_non_idempotent, :redirect, :redirect_limit, :redirect_method,
    :forwardheaders, :status_exception, :logerrors, :logtag, :observelayers, :pool, :reuse_limit,
    :socket_type, :socket_type_tls, :proxy, :detect_content_type, :decompress, :canonicalize_headers,
    :basicauth, :cookies, :cookiejar, :iofunction, :connection_limit, :sslconfig_tls,
    :reuseaddr, :backlog, :server, :listenany, :tcpisvalid, :on_shutdown, :access_log,
    :max_connections, :stream, :init, :suppress_close_error,
)

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

# A ws_options for the keywords, freed after f(opts) returns.
function with_options(f; headers=Pair{String,String}[], subprotocols=nothing,
                      maxframesize=nothing, maxmessagesize=nothing, connect_timeout=nothing,
                      handshake_timeout=nothing, readtimeout=0, close_timeout=5,
                      ping_interval=nothing, pong_timeout=nothing, send_queue_limit=nothing,
                      origins=nothing, require_origin::Bool=false, manual_upgrade::Bool=false,
                      require_ssl_verification::Bool=true, sslconfig=nothing, cafile=nothing,
                      capath=nothing, certfile=nothing, keyfile=nothing, cert=nothing, key=nothing,
                      kw...)
    sslconfig === nothing || throw(ArgumentError(
        "sslconfig (an MbedTLS/OpenSSL config object) cannot be used by wscore: pass cafile/capath " *
        "(clients) or certfile/keyfile (servers) instead"))
    unknown = [k for k in keys(kw) if !(k in IGNORED_KEYWORDS)]
    isempty(unknown) || @warn "WSCore.WebSockets ignores unknown keywords $(join(unknown, ", "))" maxlog = 1
    o = ccall(wsym(:ws_options_new), Ptr{Cvoid}, ())
    o == C_NULL && throw(OutOfMemoryError())
    try
        connect_timeout === nothing || check(ccall(wsym(:ws_options_set_connect_timeout), Cint,
            (Ptr{Cvoid}, Cint), o, ms(:connect_timeout, connect_timeout; none_at_zero=true)), "connect_timeout")
        handshake_timeout === nothing || check(ccall(wsym(:ws_options_set_handshake_timeout), Cint,
            (Ptr{Cvoid}, Cint), o, ms(:handshake_timeout, handshake_timeout)), "handshake_timeout")
        check(ccall(wsym(:ws_options_set_close_timeout), Cint, (Ptr{Cvoid}, Cint), o,
                    ms(:close_timeout, close_timeout)), "close_timeout")
        # HTTP.jl's readtimeout closes a connection that received nothing for that long; 0 = never.
        idle = ms(:readtimeout, readtimeout; none_at_zero=true)
        idle == -1 || check(ccall(wsym(:ws_options_set_idle_timeout), Cint, (Ptr{Cvoid}, Cint), o, idle),
                            "readtimeout")
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
        # Sends never park the thread: a full queue answers WS_EAGAIN and the task yields.
        check(ccall(wsym(:ws_options_set_send_timeout), Cint, (Ptr{Cvoid}, Cint), o, Cint(0)), "send_timeout")
        protocols = string_list(subprotocols)
        for (k, v) in headers
            # HTTP.jl has no subprotocols keyword: its users offer them with this
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
        certfile = something(certfile, cert, Some(nothing))
        keyfile = something(keyfile, key, Some(nothing))
        certfile === nothing || check(ccall(wsym(:ws_options_set_tls_cert_file), Cint, (Ptr{Cvoid}, Cstring), o,
                                            string(certfile)), "certfile")
        keyfile === nothing || check(ccall(wsym(:ws_options_set_tls_key_file), Cint, (Ptr{Cvoid}, Cstring), o,
                                           string(keyfile)), "keyfile")
        return f(o)
    finally
        ccall(wsym(:ws_options_free), Cvoid, (Ptr{Cvoid},), o)
    end
end

function read_headers(p::Ptr{Cvoid})
    n = ccall(wsym(:ws_header_count), Cint, (Ptr{Cvoid},), p)
    return Pair{String,String}[
        cstr(ccall(wsym(:ws_header_name), Ptr{UInt8}, (Ptr{Cvoid}, Cint), p, Cint(i))) =>
        cstr(ccall(wsym(:ws_header_value), Ptr{UInt8}, (Ptr{Cvoid}, Cint), p, Cint(i))) for i in 0:n-1]
end

# ---------------------------------------------------------------- client

"""
    WebSockets.open(f, url; headers=[], subprotocols=nothing, maxframesize, connect_timeout,
                    readtimeout, ping_interval, require_ssl_verification=true,
                    suppress_close_error=false, cafile, kw...) -> f(ws)'s value
    WebSockets.open(url; kw...) -> WebSocket

Opens a client connection to a `ws://` URL. With `f`, runs `f(ws)` and closes
the connection afterwards, returning `f`'s value; as in HTTP.jl an error in
`f` closes with 1008 (or with the code of a `WebSocketError` it threw), is
logged unless `suppress_close_error`, and is rethrown unless it is a normal
close (`isok`). Without `f`, returns the open `WebSocket`: `close` it.

Failures to connect throw `WSCoreError` (`name` "WS_ECONNREFUSED",
"WS_ETIMEDOUT", "WS_EHANDSHAKE" with the HTTP `status`, ...).
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

function open(url::AbstractString; kw...)
    u = String(url)
    occursin(r"^wss?://"i, u) || throw(ArgumentError("not a ws:// or wss:// URL: $(repr(u))"))
    out = Ref{Ptr{Cvoid}}(C_NULL)
    # ws_open blocks during DNS/TCP/TLS/handshake (at most connect_timeout):
    # on libuv's thread pool it leaves this thread free for other tasks.
    rc = with_options(; kw...) do o
        @threadcall(FP_WS_OPEN[], Cint, (Cstring, Ptr{Cvoid}, Ptr{Ptr{Cvoid}}), u, o, out)
    end
    p = out[]
    if rc != WS_OK
        # A refused handshake leaves a closed connection for diagnostics.
        status = p == C_NULL ? 0 : ccall(wsym(:ws_http_status), Cint, (Ptr{Cvoid},), p)
        err = lib_error(rc, p; status)
        ccall(wsym(:ws_free), Cvoid, (Ptr{Cvoid},), p)
        throw(err)
    end
    m = match(r"^wss?://[^/?#]*([^#]*)"i, u)
    tgt = isempty(m[1]) ? "/" : (startswith(m[1], "?") ? "/" * m[1] : m[1])
    path, query = let i = findfirst('?', tgt)
        i === nothing ? (tgt, "") : (tgt[1:i-1], tgt[i+1:end])
    end
    hdrs = Pair{String,String}[string(k) => string(v) for (k, v) in get(kw, :headers, Pair{String,String}[])]
    req = Request("GET", tgt, path, query, hdrs)
    resp = Response(Int(ccall(wsym(:ws_http_status), Cint, (Ptr{Cvoid},), p)), read_headers(p))
    sp = cstr(ccall(wsym(:ws_subprotocol), Ptr{UInt8}, (Ptr{Cvoid},), p))
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

"""
    receive(ws) -> String or Vector{UInt8}

The next message (fragments joined; pings answered inside): a `String` for
text, a `Vector{UInt8}` for binary. Waits in the scheduler, not on the thread.
Throws `WebSocketError(CloseFrameBody(code, reason))` once the connection is
closed, normal closes included; messages that arrived before the close are
returned first.
"""
function receive(ws::WebSocket)
    while true
        m = take_backlog!(ws)
        m === nothing || return m
        p = acquire(ws)
        p == C_NULL && throw(closed_error(ws))
        try
            rc, msg = try_receive(p)
            rc == WS_OK && return msg
            if rc == WS_EAGAIN
                poll_fd(ws.fd, -1; readable=true)  # ws_fileno is readable once a message or the close is there
            elseif rc == WS_ECLOSED
                # A concurrent close() may have moved the last messages to the backlog
                # (under lk, so taking lk here sees them).
                m = take_backlog!(ws)
                m === nothing || return m
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
connection with nothing left to read, where `receive` throws.)
"""
function Base.isready(ws::WebSocket)
    lock(ws.lk)
    pending = !isempty(ws.backlog)
    unlock(ws.lk)
    pending && return true
    p = acquire(ws)
    p == C_NULL && return false
    try
        # Taken to answer the question, the message waits in the backlog for receive.
        return Base.@lock ws.lk begin
            rc, msg = try_receive(p)
            rc == WS_OK && push!(ws.backlog, msg)
            rc == WS_OK
        end
    finally
        unacquire(ws)
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
        rc == WS_OK && return nothing
        rc == WS_EAGAIN || throw(send_error(ws, rc))
        sleep(0.001)
    end
end

function send_error(ws::WebSocket, rc::Integer)
    p = acquire(ws)
    p == C_NULL && return closed_error(ws)
    try
        rc == WS_ECLOSED && return WebSocketError(close_snapshot(p))
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
    send(ws, msg)

`AbstractString` → one text message; `AbstractVector{UInt8}` → one binary
message; any other iterable → one message with one fragment per element (its
type is the first element's; an empty iterable sends an empty text message).
Waits in the scheduler while the send queue is full. Concurrent `send`s from
several tasks are serialised message by message.
"""
function send(ws::WebSocket, x::Union{AbstractString,AbstractVector{UInt8}})
    data, typ = payload(x)
    Base.@lock ws.sendlock send_frame(ws, data, typ, nothing)
    return nothing
end

function send(ws::WebSocket, parts)
    Base.@lock ws.sendlock begin
        st = iterate(parts)
        if st === nothing
            send_frame(ws, "", WS_TEXT, nothing)
            return nothing
        end
        started = false
        typ = WS_TEXT
        try
            while st !== nothing
                item, s = st
                nxt = iterate(parts, s)
                data, t = payload(item)
                started || (typ = t)
                send_frame(ws, data, typ, nxt === nothing)
                started = true
                st = nxt
            end
        catch
            # A message cannot be abandoned halfway in RFC 6455, and every later
            # send would fail (WS_ESTATE): end the connection honestly.
            started && quietly_close(ws, CloseFrameBody(1011, "message aborted"))
            rethrow()
        end
    end
    return nothing
end

"""    send_batch(ws, msgs) — sends each element of `msgs` as its own message (HTTP.jl 2.x)."""
function send_batch(ws::WebSocket, msgs)
    Base.@lock ws.sendlock for m in msgs
        (m isa AbstractString || m isa AbstractVector{UInt8}) ||
            throw(ArgumentError("send_batch entries must be AbstractString or AbstractVector{UInt8}"))
        data, typ = payload(m)
        send_frame(ws, data, typ, nothing)
    end
    return nothing
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

Sends a close frame with `body`'s code (1000-1003, 1007-1014, 3000-4999; 1005
sends none) and reason (≤ 123 bytes), waits up to the close timeout (5 s; the
`close_timeout` keyword of `open`/`listen`) for the peer's close, then frees the
connection. Messages that arrive meanwhile stay readable with `receive`.
Closing a closed connection does nothing.
"""
function Base.close(ws::WebSocket, body::CloseFrameBody=CloseFrameBody(1000, "");
                    statusnumber::Union{Nothing,Integer}=nothing, freereason::Union{Nothing,AbstractString}=nothing)
    if statusnumber !== nothing || freereason !== nothing
        body = CloseFrameBody(something(statusnumber, 1000), something(freereason, ""))
    end
    code, reason = body.code, body.reason
    (sendable(code) || code == 1005) ||
        throw(ArgumentError("close code $code cannot be sent (use 1000-1003, 1007-1014 or 3000-4999)"))
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
        # The connection is closed now; keep what arrived before the close, then free.
        # Each take and its push happen under lk, so a receive that meets
        # WS_ECLOSED and then looks at the backlog cannot miss a message.
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

server_addr(s::Server) = s.host
port(s::Server) = s.port
Base.isopen(s::Server) = !s.closing
Base.show(io::IO, s::Server) = print(io, "WebSockets.Server(", s.host, ":", s.port, s.closing ? ", closed)" : ")")

function server_request(p::Ptr{Cvoid})
    Request("GET", cstr(ccall(wsym(:ws_request_target), Ptr{UInt8}, (Ptr{Cvoid},), p)),
            cstr(ccall(wsym(:ws_request_path), Ptr{UInt8}, (Ptr{Cvoid},), p)),
            cstr(ccall(wsym(:ws_request_query), Ptr{UInt8}, (Ptr{Cvoid},), p)), read_headers(p))
end

# Manual upgrade (check_origin): the Julia function decides, then the chosen
# subprotocol is the client's first offer that the server supports.
function decide_upgrade!(ws::WebSocket, check_origin, supported)
    ok = try
        check_origin(origin(ws.request))::Bool
    catch e
        @error "check_origin failed; refusing the connection" exception = (e, catch_backtrace())
        false
    end
    p = acquire(ws)
    p == C_NULL && return false
    try
        if !ok
            body = "origin not allowed"
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

function serve_conn(f, s::Server, ws::WebSocket, check_origin, supported, suppress_close_error::Bool)
    try
        if check_origin !== nothing && !decide_upgrade!(ws, check_origin, supported)
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

function accept_loop(f, s::Server, check_origin, supported, suppress_close_error::Bool)
    out = Ref{Ptr{Cvoid}}(C_NULL)
    while true
        rc = ccall(wsym(:ws_accept), Cint, (Ptr{Cvoid}, Ptr{Ptr{Cvoid}}, Cint), s.ptr, out, Cint(0))
        if rc == WS_OK
            p = out[]
            manual = ccall(wsym(:ws_state), Cint, (Ptr{Cvoid},), p) == WS_STATE_CONNECTING
            sp = manual ? "" : cstr(ccall(wsym(:ws_subprotocol), Ptr{UInt8}, (Ptr{Cvoid},), p))
            ws = WebSocket(p, false, server_request(p), nothing, sp)
            Base.@lock s.lock begin
                push!(s.conns, ws)
                # Each connection gets its own task (spread over threads when julia has several).
                t = Threads.@spawn serve_conn(f, s, ws, manual ? check_origin : nothing, supported,
                                              suppress_close_error)
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
    WebSockets.listen!(f, host="127.0.0.1", port=8081; subprotocols, origins, check_origin,
                       maxframesize, readtimeout, ping_interval, certfile, keyfile,
                       suppress_close_error=false, kw...) -> Server
    WebSockets.listen!(f, port; kw...)

Starts a server (port 0 picks a free port: read it with `port(server)`); each
connection runs `f(ws)` in its own task and is closed when `f` returns.
`origins` is an allowlist of browser Origins (others get HTTP 403);
`check_origin` a function `origin::String -> Bool` deciding each connection
("" when the client sent no Origin). An error thrown by `f` is logged (unless
`suppress_close_error` or a normal close) and closes the connection with 1011.
"""
function listen!(f, host="127.0.0.1", port::Integer=8081;
                 check_origin=nothing, subprotocols=nothing, suppress_close_error::Bool=false, kw...)
    0 <= port <= 65535 || throw(ArgumentError("port must be in 0:65535, got $port"))
    check_origin === nothing || check_origin isa Function ||
        throw(ArgumentError("check_origin must be a function origin -> Bool"))
    h = string(host)
    out = Ref{Ptr{Cvoid}}(C_NULL)
    rc = with_options(; subprotocols, manual_upgrade=check_origin !== nothing, kw...) do o
        ccall(wsym(:ws_listen), Cint, (Cstring, Cint, Ptr{Cvoid}, Ptr{Ptr{Cvoid}}), h, Cint(port), o, out)
    end
    rc == WS_OK || throw(lib_error(rc))
    p = out[]
    fd = ccall(wsym(:ws_server_fileno), Cint, (Ptr{Cvoid},), p)
    bound = ccall(wsym(:ws_server_port), Cint, (Ptr{Cvoid},), p)
    s = Server(p, Base.RawFD(fd), h, Int(bound), nothing, ReentrantLock(), Set{WebSocket}(), Set{Task}(), false)
    finalizer(finalize_server, s)  # a safety net: the accept task keeps a running server alive anyway
    s.task = errormonitor(@async accept_loop(f, s, check_origin, subprotocols, suppress_close_error))
    return s
end
listen!(f, port::Integer; kw...) = listen!(f, "127.0.0.1", port; kw...)

"""
    WebSockets.listen(f, host="127.0.0.1", port=8081; kw...)

`listen!` and wait until the server is closed (or interrupted, which closes it).
"""
function listen(f, host="127.0.0.1", port::Integer=8081; kw...)
    s = listen!(f, host, port; kw...)
    try
        wait(s)
    finally
        close(s)
    end
    return nothing
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
Base.write(ws::WebSocket, data::Union{AbstractString,AbstractVector{UInt8}}) = (send(ws, data); sizeof(data))

end # module
