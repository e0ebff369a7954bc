module tlsedge

go 1.26.8
