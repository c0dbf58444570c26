"""eurelay registry: nodes, regions, health, load and latency, behind one ``Registry``
protocol with in-memory and Redis backends. It knows nothing of RTP or SDP.

Empty until the regions issue: a single node needs no registry yet.
"""
