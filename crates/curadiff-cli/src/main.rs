fn main() { curadiff::hello(); }
