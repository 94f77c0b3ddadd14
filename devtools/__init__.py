"""Development tools that are not the product: local servers that speak the providers' real
wire APIs (simulators/), the demo storm (demo/), and the `warnd-dev` command. The product
(warnd/, channels/) never imports anything from here; tests and the demo do."""
