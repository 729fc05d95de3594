# Finding and calling libwscore. Every ccall of the package goes through
# `wsym(:name)`, a function pointer resolved once per symbol, so the library
# path can be chosen at run time (WSCORE_LIBRARY, the build tree, Libdl's path).
# tests/julia/check_ccalls.py checks every ccall here against include/wscore.h.
module LibWSCore

using Libdl

const HANDLE = Ref{Ptr{Cvoid}}(C_NULL)
const PATH = Ref{String}("")
const SYMS = Dict{Symbol,Ptr{Cvoid}}()
const SYMS_LOCK = ReentrantLock()

function candidates()
    env = get(ENV, "WSCORE_LIBRARY", "")
    isempty(env) || return [env]
    out = String[]
    dir = @__DIR__
    for _ in 1:6
        for b in filter(startswith("build"), try readdir(dir) catch; String[] end)
            api = joinpath(dir, b, "src", "api")
            isdir(api) || continue
            append!(out, [joinpath(api, f) for f in sort(readdir(api)) if startswith(f, "libwscore.so")])
        end
        dir = dirname(dir)
    end
    push!(out, "libwscore.so.0")
    return out
end

function load!()
    HANDLE[] == C_NULL || return
    tried = String[]
    for p in candidates()
        h = Libdl.dlopen_e(p)
        if h != C_NULL
            HANDLE[] = h
            PATH[] = p
            return
        end
        push!(tried, p)
    end
    error("WSCore: cannot load libwscore. Set ENV[\"WSCORE_LIBRARY\"] to the path of libwscore.so, " *
          "or build the project (meson setup build && ninja -C build). Tried: " * join(tried, ", "))
end

function wsym(name::Symbol)
    lock(SYMS_LOCK) do
        get!(SYMS, name) do
            load!()
            Libdl.dlsym(HANDLE[], name)
        end
    end
end

# Error codes and constants of include/wscore.h.
const WS_OK = Cint(0)
const WS_EINVAL = Cint(-1)
const WS_ETIMEDOUT = Cint(-3)
const WS_EAGAIN = Cint(-4)
const WS_ECLOSED = Cint(-5)
const WS_EHANDSHAKE = Cint(-6)
const WS_ETLS = Cint(-7)
const WS_ECANCELED = Cint(-20)
const WS_TEXT = Cint(1)
const WS_BINARY = Cint(2)
const WS_STATE_CONNECTING = Cint(0)
const WS_STATE_OPEN = Cint(1)
const WS_STATE_CLOSING = Cint(2)
const WS_STATE_CLOSED = Cint(3)

errname(rc::Integer) = unsafe_string(ccall(wsym(:ws_err_name), Cstring, (Cint,), rc))
strerror(rc::Integer) = unsafe_string(ccall(wsym(:ws_strerror), Cstring, (Cint,), rc))
version() = unsafe_string(ccall(wsym(:ws_version), Cstring, ()))

end # module
