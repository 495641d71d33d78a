mod dashboard;

pub use dashboard::Dashboard;
