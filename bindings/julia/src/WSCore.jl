"""
    WSCore

Julia binding of wscore, a WebSocket library with a C core. `WSCore.WebSockets`
mirrors `HTTP.WebSockets` (HTTP.jl 2.x): replace `using HTTP.WebSockets` with
`using WSCore.WebSockets`.
"""
module WSCore

include("lib.jl")
include("WebSockets.jl")

function __init__()
    LibWSCore.load!()
end

end # module
